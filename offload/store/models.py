"""What the store hands out: plain, immutable job records."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FINISHED",
    "STATUSES",
    "WAKEUP_ENQUEUED",
    "WAKEUP_ENQUEUING",
    "WAKEUP_PENDING",
    "Attempt",
    "Delivery",
    "Job",
    "Step",
    "utcnow",
]

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})

# States of a job's wake-up (its Cloud Task), see docs/ARCHITECTURE.md.
WAKEUP_ENQUEUING = "enqueuing"  # recorded; web is creating the task right now
WAKEUP_PENDING = "pending"  # not in Cloud Tasks: the reconciler will create it
WAKEUP_ENQUEUED = "enqueued"  # the reconciler saw the task in Cloud Tasks


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Attempt:
    """One delivery of a job that the worker ran."""

    number: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str | None
    error: str | None
    run: int | None = None  # the job's run counter (continuations included); None before

    def to_resource(self) -> dict[str, Any]:
        """The attempt as the API shows it."""
        return {
            "number": self.number,
            "run": self.run,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "outcome": self.outcome,
            "error": self.error,
        }


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery of a finished job."""

    id: str
    event: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None

    def to_resource(self) -> dict[str, Any]:
        """The delivery as the API shows it."""
        return {
            "id": self.id,
            "event": self.event,
            "state": self.state,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": _iso(self.created_at),
            "delivered_at": _iso(self.delivered_at),
        }


@dataclass(frozen=True)
class Step:
    """One ``ctx.step`` of a durable job: ``running``, ``finished`` or ``failed``."""

    name: str
    status: str
    run: int
    started_at: dt.datetime
    finished_at: dt.datetime | None

    def to_resource(self) -> dict[str, Any]:
        """The step as the API shows it (its result stays in the store)."""
        return {
            "name": self.name,
            "status": self.status,
            "run": self.run,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class Job:
    """A job as stored."""

    id: str
    type: str
    status: str
    reason: str | None
    payload: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    request_id: str
    trace: str | None
    owner: str
    idempotency_key: str | None
    request_hash: str | None
    attempts: int
    max_attempts: int
    deadline_seconds: float
    progress: float | None
    progress_message: str | None
    cancel_requested: bool
    task_name: str | None
    lease_token: str | None
    lease_expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    scheduled_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    resubmit_of: str | None = None
    wakeup: str | None = None
    wakeup_number: int = 0
    attempt_log: tuple[Attempt, ...] = field(default=())
    first_started_at: dt.datetime | None = None
    notify_url: str | None = None
    deliveries: tuple[Delivery, ...] = field(default=())
    runs: int = 0
    continuing: bool = False
    spent_seconds: float = 0.0
    checkpoint_at: dt.datetime | None = None
    steps: tuple[Step, ...] = field(default=())
    parent_id: str | None = None
    children_open: int = 0
    waiting: bool = False
    # Counts of the job's children by status (read with the attempt log); None: none.
    children: dict[str, int] | None = None

    @property
    def finished(self) -> bool:
        """Whether the job reached a final status."""
        return self.status in FINISHED

    @property
    def wakeup_view(self) -> str | None:
        """``pending`` until Cloud Tasks took the job's wake-up, ``enqueued`` after; else None.

        Only a queued job waits for a wake-up; a running or finished one has none due.
        """
        if self.status != QUEUED:
            return None
        return "pending" if self.wakeup == WAKEUP_PENDING else "enqueued"

    def to_resource(self) -> dict[str, Any]:
        """The job as the API shows it (the status monitor)."""
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "payload": self.payload,
            "result": self.result,
            "error": self.error,
            "progress": (
                None
                if self.progress is None
                else {"fraction": self.progress, "message": self.progress_message}
            ),
            "cancel_requested": self.cancel_requested,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "deadline_seconds": self.deadline_seconds,
            "request_id": self.request_id,
            "resubmit_of": self.resubmit_of,
            "wakeup": self.wakeup_view,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "scheduled_at": _iso(self.scheduled_at),
            "first_started_at": _iso(self.first_started_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "notify": (
                None
                if self.notify_url is None
                else {
                    "url": self.notify_url,
                    "deliveries": [d.to_resource() for d in self.deliveries],
                }
            ),
            "attempt_log": [a.to_resource() for a in self.attempt_log],
            "runs": self.runs,
            "steps": [s.to_resource() for s in self.steps],
            "checkpoint_at": _iso(self.checkpoint_at),
            "parent_id": self.parent_id,
            "waiting": self.waiting,
            "children": (
                None
                if not self.children
                else {
                    "total": sum(self.children.values()),
                    "open": self.children_open,
                    "by_status": dict(sorted(self.children.items())),
                }
            ),
        }
