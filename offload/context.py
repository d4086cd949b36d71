"""What a running job sees: its ids, its deadline, progress and cancellation."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from offload.deadline import Deadline
from offload.errors import CancelledError

__all__ = ["JobContext"]


@dataclass
class JobContext:
    """Passed to every job handler as its first argument.

    ``progress`` writes are rate-limited (at most one store write per
    ``progress_interval`` seconds, the last one always kept) so a chatty job cannot
    hammer the store; each write also checks for a cancel request.
    """

    job_id: str
    job_type: str
    attempt: int  # this delivery: Cloud Tasks' retry count + 1
    run: int  # how many times the worker has started this job, this run included
    max_attempts: int
    request_id: str
    deadline: Deadline
    save_progress: Callable[[float, str | None], None]
    read_cancel_requested: Callable[[], bool]
    progress_interval: float = 1.0
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("offload.job"))
    _last_write: float = field(default=float("-inf"), repr=False)
    _cancelled: bool = field(default=False, repr=False)

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure now fails the job for good (its runs are used up)."""
        return self.run >= self.max_attempts

    @property
    def cancelled(self) -> bool:
        """Whether a client asked to cancel this job (checked against the store)."""
        if not self._cancelled:
            self._cancelled = self.read_cancel_requested()
        return self._cancelled

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; raises CancelledError or DeadlineExceededError if due."""
        fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        if now - self._last_write >= self.progress_interval or fraction >= 1.0:
            self._last_write = now
            self.save_progress(fraction, message)
            self.check()
        else:
            self.deadline.check()

    def check(self) -> None:
        """A checkpoint: raise CancelledError if cancelled, DeadlineExceededError if late."""
        if self.cancelled:
            raise CancelledError("the job was cancelled")
        self.deadline.check()
