"""Creating the continuation task of a job whose run spent its slice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from offload.enqueue import TaskQueue
from offload.envelope import TaskEnvelope
from offload.ids import continuation_task_id, lease_end_task_id
from offload.registry import JobRegistry
from offload.store import Job

__all__ = ["TaskContinuer"]


class TaskContinuer:
    """Wakes a job's next run with a Cloud Task named after the job id and run number.

    The task carries the submitting request's id and trace, so every run's log lines
    belong to the client's original request.
    """

    def __init__(
        self,
        tasks: Callable[[], TaskQueue],
        traceparent: str,
        registry: JobRegistry | None = None,
    ) -> None:
        self._tasks = tasks  # built on first use: most deliveries never continue
        self._traceparent = traceparent
        self._registry = registry  # which queue each job type's tasks go to

    def task_name(self, job: Job, run: int) -> str:
        """The full name of the task that wakes run ``run`` of the job, on the job's queue."""
        job_type = self._registry.get(job.type) if self._registry is not None else None
        queue = job_type.queue if job_type is not None else None  # None: OFFLOAD_QUEUE
        return self._tasks().task_name(continuation_task_id(job.id, run), queue)

    def enqueue(self, job: Job, run: int, budget_seconds: float) -> None:
        """Create that task; an ``ALREADY_EXISTS`` (a repeated continuation) counts as done."""
        self._create(continuation_task_id(job.id, run), job, budget_seconds)

    def look_again_at_lease_end(self, job: Job) -> bool:
        """A task for when the lease of the run holding ``job`` ends; False if it has none.

        That run may have died (its instance killed): the task then takes the job over
        as soon as it may, where the queue's backoff would have retried minutes later.
        """
        if job.lease_expires_at is None or not job.runs:
            return False
        self._create(
            lease_end_task_id(job.id, job.runs),
            job,
            job.deadline_seconds,
            # A second past the lease: gunicorn's timeout has ended the run by then.
            at=job.lease_expires_at + dt.timedelta(seconds=1),
        )
        return True

    def _create(
        self, task_id: str, job: Job, budget_seconds: float, at: dt.datetime | None = None
    ) -> None:
        job_type = self._registry.get(job.type) if self._registry is not None else None
        self._tasks().enqueue(
            task_id=task_id,
            queue=job_type.queue if job_type is not None else None,
            envelope=TaskEnvelope.make(job_id=job.id, job_type=job.type, request_id=job.request_id),
            headers={"X-Request-ID": job.request_id, "traceparent": self._traceparent},
            budget_seconds=budget_seconds,
            schedule_time=at,
        )
