"""Job types: a decorator describes a handler, an application's registry holds them.

    @job("reports.build", payload=ReportPayload, deadline_seconds=300, max_attempts=3)
    def build_report(ctx: JobContext, payload: ReportPayload) -> dict[str, Any]: ...

``@job`` only marks the function; nothing is registered at import. Each app builds a
:class:`JobRegistry` from the modules ``OFFLOAD_JOB_MODULES`` names and keeps it in
``app.extensions`` (``get_registry(app)``), so two apps in one process (tests) never
share job types. ``web`` validates submissions against the payload model; ``worker``
runs the handler.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from offload.errors import ConfigError

if TYPE_CHECKING:
    from flask import Flask

    from offload.context import JobContext

__all__ = ["JobRegistry", "JobType", "get_registry", "job"]

P = TypeVar("P", bound=BaseModel)
Handler = Callable[["JobContext", Any], Any]

# A job's budget spans its runs (each at most one slice, which fits the request limits),
# so it may exceed any request limit; a week bounds what one job may hold a worker for.
MAX_DEADLINE_SECONDS = 7 * 24 * 3600.0
# Cloud Tasks' queue ids: letters, digits and hyphens, at most 100.
_QUEUE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
# Where @job leaves its description on the handler.
_MARK = "__offload_job__"


@dataclass(frozen=True)
class JobType:
    """A kind of job: its handler, payload model and limits."""

    name: str
    handler: Handler
    payload_model: type[BaseModel]
    deadline_seconds: float
    max_attempts: int
    description: str
    queue: str | None = None  # its Cloud Tasks queue id; None: OFFLOAD_QUEUE


def job(
    name: str,
    *,
    payload: type[P],
    deadline_seconds: float = 60.0,
    max_attempts: int = 5,
    queue: str | None = None,
) -> Callable[[Callable[[JobContext, P], Any]], Callable[[JobContext, P], Any]]:
    """Mark the decorated function as the handler of job type ``name``.

    ``queue`` routes the type to its own Cloud Tasks queue (declared in queue.yaml), so
    slow or expensive work gets its own rate and concurrency limits.
    """
    if queue is not None and not _QUEUE_ID.match(queue):
        raise ValueError(f"job {name!r}: queue {queue!r} is not a Cloud Tasks queue id")
    if not 0 < deadline_seconds <= MAX_DEADLINE_SECONDS:
        raise ValueError(f"job {name!r}: deadline_seconds must be in (0, {MAX_DEADLINE_SECONDS}]")
    if max_attempts < 1:
        raise ValueError(f"job {name!r}: max_attempts must be at least 1")

    def mark(func: Callable[[JobContext, P], Any]) -> Callable[[JobContext, P], Any]:
        doc = (func.__doc__ or "").strip()
        setattr(
            func,
            _MARK,
            JobType(
                name=name,
                handler=func,
                payload_model=payload,
                deadline_seconds=float(deadline_seconds),
                max_attempts=max_attempts,
                description=doc.splitlines()[0] if doc else "",
                queue=queue,
            ),
        )
        return func

    return mark


class JobRegistry:
    """The job types of one application, by name."""

    def __init__(self, types: Iterable[JobType] = ()) -> None:
        self._types: dict[str, JobType] = {}
        for job_type in types:
            self.add(job_type)

    @classmethod
    def from_modules(cls, modules: Iterable[str]) -> JobRegistry:
        """A registry of every ``@job`` handler in ``modules`` (and their submodules)."""
        registry = cls()
        for name in modules:
            if name:
                registry.load_module(name)
        return registry

    def add(self, item: JobType | Callable[..., Any]) -> JobType:
        """Register a job type, or a function marked by ``@job``."""
        job_type = item if isinstance(item, JobType) else getattr(item, _MARK, None)
        if not isinstance(job_type, JobType):
            raise TypeError(f"{item!r} is not a @job handler")
        existing = self._types.get(job_type.name)
        if existing is not None and existing.handler is not job_type.handler:
            raise ConfigError(f"job type {job_type.name!r} is defined twice")
        self._types[job_type.name] = job_type
        return job_type

    def load_module(self, name: str) -> None:
        """Import ``name`` and register its handlers (one clear error if it cannot)."""
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(
                f"OFFLOAD_JOB_MODULES names {name!r}, which cannot be imported: {e}"
            ) from None
        self._scan(module, set())

    def _scan(self, module: ModuleType, seen: set[str]) -> None:
        seen.add(module.__name__)
        for value in list(vars(module).values()):
            if isinstance(value, ModuleType):
                # A package's submodules it imports (jobs -> jobs.demo) count as its own.
                if value.__name__.startswith(module.__name__ + ".") and value.__name__ not in seen:
                    self._scan(value, seen)
            elif isinstance(getattr(value, _MARK, None), JobType):
                self.add(value)

    def get(self, name: str) -> JobType | None:
        """The job type called ``name``, or None."""
        return self._types.get(name)

    def names(self) -> list[str]:
        """Every job type's name, sorted."""
        return sorted(self._types)

    def __iter__(self) -> Iterator[JobType]:
        return iter([self._types[k] for k in sorted(self._types)])

    def queues(self, default: str) -> frozenset[str]:
        """Every queue id the job types use, ``default`` (OFFLOAD_QUEUE) included."""
        return frozenset({default, *(t.queue for t in self._types.values() if t.queue)})

    def __len__(self) -> int:
        return len(self._types)


def get_registry(app: Flask) -> JobRegistry:
    """The job types of ``app``."""
    registry: JobRegistry = app.extensions["offload.jobs"]
    return registry
