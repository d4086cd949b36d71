"""Job types: a decorator registers a handler with its payload model and limits.

    @job("reports.build", payload=ReportPayload, deadline_seconds=300, max_attempts=3)
    def build_report(ctx: JobContext, payload: ReportPayload) -> dict[str, Any]: ...

``web`` validates submissions against the payload model; ``worker`` runs the handler.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from offload.context import JobContext

__all__ = ["JobType", "get_job_type", "job", "job_types", "load_job_modules"]

P = TypeVar("P", bound=BaseModel)
Handler = Callable[["JobContext", Any], Any]

# A job's budget spans its runs (each at most one slice, which fits the request limits),
# so it may exceed any request limit; a week bounds what one job may hold a worker for.
MAX_DEADLINE_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True)
class JobType:
    """A registered kind of job."""

    name: str
    handler: Handler
    payload_model: type[BaseModel]
    deadline_seconds: float
    max_attempts: int
    description: str


_REGISTRY: dict[str, JobType] = {}


def job(
    name: str,
    *,
    payload: type[P],
    deadline_seconds: float = 60.0,
    max_attempts: int = 5,
) -> Callable[[Callable[[JobContext, P], Any]], Callable[[JobContext, P], Any]]:
    """Register the decorated function as the handler of job type ``name``."""
    if not 0 < deadline_seconds <= MAX_DEADLINE_SECONDS:
        raise ValueError(f"job {name!r}: deadline_seconds must be in (0, {MAX_DEADLINE_SECONDS}]")
    if max_attempts < 1:
        raise ValueError(f"job {name!r}: max_attempts must be at least 1")

    def register(func: Callable[[JobContext, P], Any]) -> Callable[[JobContext, P], Any]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.handler is not func:
            raise ValueError(f"job type {name!r} is registered twice")
        _REGISTRY[name] = JobType(
            name=name,
            handler=func,
            payload_model=payload,
            deadline_seconds=float(deadline_seconds),
            max_attempts=max_attempts,
            description=(func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else "",
        )
        return func

    return register


def get_job_type(name: str) -> JobType | None:
    """The registered job type called ``name``, or None."""
    return _REGISTRY.get(name)


def job_types() -> list[JobType]:
    """Every registered job type, by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def load_job_modules(modules: Iterable[str]) -> None:
    """Import the modules whose ``@job`` decorators register the application's job types."""
    for module in modules:
        if module:
            importlib.import_module(module)
