"""Waking a parent whose last child finished: its wake-up task, from web or worker.

The store calls the hook after the finishing transaction of the parent's last child
commits (``JobStore.on_wake``). The task is named from the parent's id and next run
number (the name its wait stored as ``task_name``), so a second wake of the same wait
(the parent's own check, a retried finish, the cron sweep) is ``ALREADY_EXISTS``.
"""

from __future__ import annotations

import datetime as dt
import logging

from offload.enqueue import TaskQueue
from offload.envelope import TaskEnvelope
from offload.errors import EnqueueError
from offload.store import QUEUED, Job, JobStore

__all__ = ["init_store", "wake", "wake_overdue"]

log = logging.getLogger(__name__)


def wake(tasks: TaskQueue, job: Job) -> bool:
    """Create the wake-up task of a waiting job with no child left; False if not due."""
    if not (job.waiting and job.status == QUEUED and job.children_open == 0 and job.task_name):
        return False
    tasks.enqueue(
        task_id="",
        name=job.task_name,
        envelope=TaskEnvelope.make(job_id=job.id, job_type=job.type, request_id=job.request_id),
        headers={"X-Request-ID": job.request_id},
        budget_seconds=max(job.deadline_seconds - job.spent_seconds, 1.0),
    )
    log.info("job %s woken: its last child finished", job.id, extra={"labels": {"job_id": job.id}})
    return True


def init_store(store: JobStore, tasks: TaskQueue) -> None:
    """Wake parents through ``tasks`` when their last child's finish commits."""

    def on_wake(parent_id: str) -> None:
        job = store.get(parent_id, with_attempts=False)
        if job is not None:
            wake(tasks, job)

    store.on_wake.append(on_wake)


def wake_overdue(store: JobStore, tasks: TaskQueue, *, older_than_seconds: float = 60.0) -> int:
    """Wake the waiting jobs with no child left for a minute (their wake-up create failed)."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_seconds)
    woken = 0
    for job in store.overdue_parents(older_than=cutoff):
        try:
            woken += wake(tasks, job)
        except EnqueueError as e:
            log.warning("job %s still not woken: %s", job.id, e)
    return woken
