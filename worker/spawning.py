"""Creating a running job's children (``ctx.spawn_many``): rows first, then their tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from offload.enqueue import TaskQueue
from offload.envelope import TaskEnvelope, TaskSpec
from offload.errors import PermanentError, TransientError
from offload.ids import child_job_id, task_id_for
from offload.registry import JobRegistry
from offload.store import Job, JobStore, NewJob

__all__ = ["MAX_CHILDREN", "Spawner"]

# Children per spawn step: one transaction inserts them all.
MAX_CHILDREN = 10_000


class Spawner:
    """Makes the ``spawn_children`` function of one run (fenced by its claim token)."""

    def __init__(
        self,
        store: JobStore,
        tasks: Callable[[], TaskQueue],
        registry: JobRegistry,
        traceparent: str,
    ) -> None:
        self._store, self._tasks, self._registry = store, tasks, registry
        self._traceparent = traceparent

    def bind(self, job: Job, token: str) -> Callable[[str, str, list[Any]], list[str]]:
        """The spawn function of the run of ``job`` holding ``token``."""

        def spawn(step: str, type_name: str, payloads: list[Any]) -> list[str]:
            news = self._children(job, step, type_name, payloads)
            queued = self._store.spawn_children(job.id, token, news)
            self._enqueue(job, queued)
            return [n.id for n in news]

        return spawn

    def _children(self, job: Job, step: str, type_name: str, payloads: list[Any]) -> list[NewJob]:
        """The child records, payloads validated: a mistake here fails the parent."""
        job_type = self._registry.get(type_name)
        if job_type is None:
            raise PermanentError(f"{step}: no job type is called {type_name!r}")
        if len(payloads) > MAX_CHILDREN:
            raise PermanentError(f"{step}: {len(payloads)} children, at most {MAX_CHILDREN}")
        tasks = self._tasks()
        news = []
        for index, payload in enumerate(payloads):
            try:
                valid = job_type.payload_model.model_validate(payload).model_dump(mode="json")
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "payload"
                raise PermanentError(
                    f"{step}: child {index} has an invalid payload for {type_name} "
                    f"({where}: {first['msg']})"
                ) from None
            child_id = child_job_id(job.id, step, index)
            news.append(
                NewJob(
                    id=child_id,
                    type=type_name,
                    payload=valid,
                    request_id=job.request_id,
                    trace=job.trace,
                    max_attempts=job_type.max_attempts,
                    deadline_seconds=job_type.deadline_seconds,
                    task_name=tasks.task_name(task_id_for(child_id), job_type.queue),
                    owner=job.owner,
                    parent_id=job.id,
                )
            )
        return news

    def _enqueue(self, parent: Job, children: list[Job]) -> None:
        """Create the queued children's tasks, 100 per BatchCreateTasks call."""
        headers = {"X-Request-ID": parent.request_id, "traceparent": self._traceparent}
        specs = [
            TaskSpec(
                name=child.task_name or "",
                envelope=TaskEnvelope.make(
                    job_id=child.id, job_type=child.type, request_id=child.request_id
                ),
                headers=headers,
                budget_seconds=child.deadline_seconds,
            )
            for child in children
        ]
        errors = [e for e in self._tasks().enqueue_many(specs) if e is not None]
        if errors:
            # The step fails and runs again in the retry, which finds the children
            # inserted and creates the tasks still missing.
            raise TransientError(
                f"{len(errors)} of {len(specs)} child tasks were not created: {errors[0]}"
            )
