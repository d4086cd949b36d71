"""Creating the continuation task of a job whose run spent its slice."""

from __future__ import annotations

from collections.abc import Callable

from offload.enqueue import TaskQueue
from offload.envelope import TaskEnvelope
from offload.ids import continuation_task_id
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
        self._tasks().enqueue(
            task_id=continuation_task_id(job.id, run),
            name=self.task_name(job, run),
            envelope=TaskEnvelope.make(job_id=job.id, job_type=job.type, request_id=job.request_id),
            headers={"X-Request-ID": job.request_id, "traceparent": self._traceparent},
            budget_seconds=budget_seconds,
        )
