"""The classification of a run's outcome: what happened, before anything is recorded.

The runner turns every way a run can end (a result, an exception, a spent slice, a lost
lease) into one :class:`Verdict`; :mod:`worker.conclude` then records it in one place
and logs it in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from offload.errors import (
    CancelledError,
    DeadlineExceededError,
    LeaseLostError,
    PermanentError,
    SliceSpentError,
    TransientError,
    WaitingError,
)
from offload.jsondepth import MAX_JSON_DEPTH, too_deep
from offload.outcomes import Action, Reason
from offload.store import Job

__all__ = ["Verdict", "classify_error", "classify_result", "error_record"]


@dataclass(frozen=True)
class Verdict:
    """What to do about a delivery: ``action``, why (``reason``), and what goes with it."""

    action: Action
    reason: Reason
    error: BaseException | str | None = None
    result: Any = None
    elapsed: float = 0.0  # seconds the handler ran
    last_attempt: bool = False  # a retryable failure turned final: no attempts left
    detail: str = ""  # for the log line of verdicts that carry no error
    retry_after: int | None = None  # BUSY: seconds until the holder's lease ends
    holder: Job | None = None  # BUSY: the job as its holding run left it (runs, lease)

    def error_record(self) -> dict[str, Any] | None:
        """The error as the job resource shows it, or None."""
        return None if self.error is None else error_record(self.reason, self.error)


def error_record(kind: str, exc: BaseException | str) -> dict[str, Any]:
    """``{"type", "message"}`` for the store, the message cut to 2,000 characters."""
    message = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    return {"type": str(kind), "message": message[:2000]}


def classify_error(exc: BaseException, elapsed: float) -> Verdict:
    """The verdict for a handler that raised ``exc`` after ``elapsed`` seconds."""
    if isinstance(exc, SliceSpentError):
        return Verdict(Action.CONTINUE, Reason.CONTINUED, elapsed=elapsed, detail=str(exc))
    if isinstance(exc, WaitingError):
        return Verdict(Action.WAIT, Reason.WAITING, elapsed=elapsed, detail=str(exc))
    if isinstance(exc, LeaseLostError):
        return Verdict(Action.DROP, Reason.LEASE_LOST, elapsed=elapsed, detail=str(exc))
    if isinstance(exc, DeadlineExceededError):
        return Verdict(Action.RETRY, Reason.DEADLINE_EXCEEDED, exc, elapsed=elapsed)
    if isinstance(exc, CancelledError):
        return Verdict(Action.CANCEL, Reason.CANCELLED, elapsed=elapsed)
    if isinstance(exc, PermanentError):
        return Verdict(Action.FAIL, Reason.PERMANENT_ERROR, exc, elapsed=elapsed)
    if isinstance(exc, TransientError):
        return Verdict(Action.RETRY, Reason.TRANSIENT_ERROR, exc, elapsed=elapsed)
    return Verdict(Action.RETRY, Reason.ERROR, exc, elapsed=elapsed)


def classify_result(result: Any, elapsed: float) -> Verdict:
    """The verdict for a handler that returned ``result``: success if JSON can hold it."""
    try:
        # Bounded first: deeper results break pydantic's serializer and json (RecursionError).
        if too_deep(result, MAX_JSON_DEPTH - 1) is not None:
            raise ValueError(f"the result nests more than {MAX_JSON_DEPTH - 1} levels deep")
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        return Verdict(Action.FAIL, Reason.INVALID_RESULT, e, elapsed=elapsed)
    return Verdict(Action.SUCCEED, Reason.SUCCEEDED, result=result, elapsed=elapsed)
