"""The job resource as the client returns it: typed, and tolerant of fields it does not know."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FINISHED", "Attempt", "Job", "JobFailure", "Progress"]

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: Any, default: float = 0.0) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


@dataclass(frozen=True)
class Progress:
    """The job's last reported progress: a fraction from 0 to 1 and an optional message."""

    fraction: float
    message: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Progress | None:
        """The progress in ``data`` (a JSON object), or None."""
        if not isinstance(data, dict):
            return None
        return cls(fraction=_num(data.get("fraction")), message=_str(data.get("message")))


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed: the error's type and message."""

    type: str
    message: str


@dataclass(frozen=True)
class Attempt:
    """One run of the job."""

    number: int
    outcome: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None


@dataclass(frozen=True)
class Job:
    """A job resource (``GET /jobs/{id}``); ``raw`` keeps the JSON, new fields included."""

    id: str
    type: str
    status: str
    reason: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: JobFailure | None = None
    progress: Progress | None = None
    cancel_requested: bool = False
    attempts: int = 0
    max_attempts: int = 0
    deadline_seconds: float = 0.0
    request_id: str | None = None
    resubmit_of: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    scheduled_at: dt.datetime | None = None
    first_started_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    attempt_log: tuple[Attempt, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Whether the job reached a final status (succeeded, failed or cancelled)."""
        return self.status in FINISHED

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A job from its JSON resource; unknown fields stay in ``raw`` only."""
        error = data.get("error")
        attempts = data.get("attempt_log")
        return cls(
            id=str(data.get("id", "")),
            type=str(data.get("type", "")),
            status=str(data.get("status", "")),
            reason=_str(data.get("reason")),
            payload=data["payload"] if isinstance(data.get("payload"), dict) else {},
            result=data.get("result"),
            error=(
                JobFailure(type=str(error.get("type", "")), message=str(error.get("message", "")))
                if isinstance(error, dict)
                else None
            ),
            progress=Progress.from_dict(data.get("progress")),
            cancel_requested=bool(data.get("cancel_requested", False)),
            attempts=int(_num(data.get("attempts"))),
            max_attempts=int(_num(data.get("max_attempts"))),
            deadline_seconds=_num(data.get("deadline_seconds")),
            request_id=_str(data.get("request_id")),
            resubmit_of=_str(data.get("resubmit_of")),
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            scheduled_at=_time(data.get("scheduled_at")),
            first_started_at=_time(data.get("first_started_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            attempt_log=tuple(
                Attempt(
                    number=int(_num(a.get("number"))),
                    outcome=_str(a.get("outcome")),
                    started_at=_time(a.get("started_at")),
                    finished_at=_time(a.get("finished_at")),
                    error=_str(a.get("error")),
                )
                for a in (attempts if isinstance(attempts, list) else [])
                if isinstance(a, dict)
            ),
            raw=dict(data),
        )
