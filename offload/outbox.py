"""Waking jobs up through Cloud Tasks, and the reconciler that makes sure none is forgotten.

A job is recorded together with its pending wake-up (columns of its row), then its
Cloud Task is created. The reconciler finds every unfinished job whose wake-up Cloud
Tasks never acknowledged, or whose task is gone, and enqueues it again under the next
task name. A second delivery of one job is harmless (the worker's claim runs it once).
See docs/ARCHITECTURE.md, "Outbox and reconciler".
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from offload.enqueue import TaskQueue
from offload.envelope import TaskEnvelope, queue_of
from offload.errors import EnqueueError, OffloadError
from offload.fanin import wake_overdue
from offload.ids import task_id_for
from offload.logs import log_context
from offload.settings import Settings
from offload.store import QUEUED, Job, JobStore, utcnow
from offload.store.models import WAKEUP_PENDING
from offload.webhook_dispatch import enqueue_pending

__all__ = ["ReconcileReport", "Reconciler", "enqueue_job"]

log = logging.getLogger(__name__)


def task_name_for(tasks: TaskQueue, job: Job, number: int) -> str:
    """The name of the job's wake-up ``number``, on the queue its type routes to.

    The queue is read from the job's current task name (set from its type at submit).
    """
    task_id = task_id_for(job.id, number)
    if job.task_name and "/tasks/" in job.task_name:
        return f"{queue_of(job.task_name)}/tasks/{task_id}"
    return tasks.task_name(task_id)


def enqueue_job(tasks: TaskQueue, job: Job, *, traceparent: str | None = None) -> str:
    """Create the Cloud Task of the job's current wake-up; ``ALREADY_EXISTS`` counts as done."""
    if traceparent is None:  # not from a request: a new span of the job's own trace
        trace = job.trace or os.urandom(16).hex()
        traceparent = f"00-{trace}-{os.urandom(8).hex()}-00"
    schedule = job.scheduled_at if job.scheduled_at and job.scheduled_at > utcnow() else None
    return tasks.enqueue(
        task_id=task_id_for(job.id, job.wakeup_number),
        name=task_name_for(tasks, job, job.wakeup_number),
        envelope=TaskEnvelope.make(job_id=job.id, job_type=job.type, request_id=job.request_id),
        headers={"X-Request-ID": job.request_id, "traceparent": traceparent},
        budget_seconds=job.deadline_seconds,
        schedule_time=schedule,
    )


@dataclass
class ReconcileReport:
    """What one pass did."""

    looked_at: int = 0
    enqueued: int = 0
    confirmed: int = 0
    failed: int = 0
    parents_woken: int = 0  # waiting parents whose last child's wake-up was never created
    webhooks_enqueued: int = 0  # deliveries whose task the finish could not create
    stopped: bool = False  # Cloud Tasks unreachable: the rest waits for the next pass

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-friendly numbers."""
        return dict(self.__dict__)


class Reconciler:
    """One pass finds and fixes forgotten wake-ups; :meth:`run_forever` repeats it."""

    def __init__(self, store: JobStore, tasks: TaskQueue, settings: Settings) -> None:
        self.store = store
        self.tasks = tasks
        self.grace = settings.reconcile_grace_seconds
        self.recheck = settings.reconcile_recheck_seconds
        self.batch = settings.reconcile_batch

    def run_once(self) -> ReconcileReport:
        """Look at every due wake-up (up to the batch size) and at runs that died."""
        report = ReconcileReport()
        if self.tasks.breaker.is_open():  # Cloud Tasks is down: nothing to do until it is back
            report.stopped = True
            return report
        now = utcnow()
        dead_before = now - dt.timedelta(seconds=self.grace)
        try:
            for job in self.store.due_wakeups(now=now, limit=self.batch):
                if not self._settle(job, report, dead_before=None):
                    break
            else:
                for job in self.store.dead_runs(lease_expired_before=dead_before, limit=self.batch):
                    if not self._settle(job, report, dead_before=dead_before):
                        break
            if not report.stopped:
                # The other wake-ups a commit promises: a parent's (its last child
                # finished) and a webhook's (its job finished). Their hooks create the
                # task right after the commit; these sweeps create the ones that failed.
                report.parents_woken = wake_overdue(
                    self.store, self.tasks, older_than_seconds=self.grace
                )
                report.webhooks_enqueued = enqueue_pending(
                    self.store, self.tasks, older_than_seconds=self.grace
                )
        except OffloadError as e:
            log.warning("reconciler pass cut short: %s", e)
            report.stopped = True
        if any((report.enqueued, report.failed, report.stopped)) or any(
            (report.parents_woken, report.webhooks_enqueued)
        ):
            log.info("reconciler pass: %s", report.as_dict())
        return report

    def _settle(
        self, job: Job, report: ReconcileReport, *, dead_before: dt.datetime | None
    ) -> bool:
        """Make sure ``job`` has a task; False when Cloud Tasks is down (end the pass)."""
        report.looked_at += 1
        with log_context(job_id=job.id, job_type=job.type):
            try:
                if job.status == QUEUED and job.wakeup == WAKEUP_PENDING:
                    self._enqueue(job, report)
                elif self.tasks.exists(current := job.task_name or self._task_name(job, 0)):
                    if job.status == QUEUED:
                        self._confirm(job)
                        report.confirmed += 1
                else:
                    renewed = self.store.renew_wakeup(
                        job.id,
                        number=job.wakeup_number,
                        task_name=self._task_name(job, job.wakeup_number + 1),
                        now=utcnow(),
                        gone_task=current,
                        lease_expired_before=dead_before,
                    )
                    if renewed is not None:
                        log.warning(
                            "job %s is %s but its task %s is gone: enqueuing wake-up %d",
                            job.id,
                            job.status,
                            job.task_name,
                            renewed.wakeup_number,
                        )
                        self._enqueue(renewed, report)
            except EnqueueError as e:
                report.failed += 1
                log.warning("could not wake job %s: %s", job.id, e)
                if self.tasks.breaker.is_open():
                    report.stopped = True
                    return False
        return True

    def _task_name(self, job: Job, number: int) -> str:
        return task_name_for(self.tasks, job, number)

    def _enqueue(self, job: Job, report: ReconcileReport) -> None:
        name = enqueue_job(self.tasks, job)
        self._confirm(job)
        report.enqueued += 1
        log.info("job %s woken up by the reconciler: task %s", job.id, name)

    def _confirm(self, job: Job) -> None:
        self.store.confirm_wakeup(
            job.id,
            number=job.wakeup_number,
            next_look=utcnow() + dt.timedelta(seconds=self.recheck),
        )

    def run_forever(self, interval: float, stop: threading.Event | None = None) -> None:
        """Pass after pass, ``interval`` seconds apart, until ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("reconciler pass failed; trying again in %gs", interval)
            stop.wait(interval)
