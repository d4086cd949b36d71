"""A small circuit breaker: stop waiting on a dependency that is down.

closed: calls go through. After ``failure_threshold`` failures in a row it opens: calls
are refused at once for ``reset_seconds``. Then it is half-open: one trial call goes
through (the caller may give it a shorter timeout); success closes it, failure opens it
again. Per process, thread-safe; nothing is shared between processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker"]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    """Closed, open or half-open; read :attr:`state`, ask :meth:`allow` before a call."""

    def __init__(
        self,
        *,
        failure_threshold: int = 1,
        reset_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (open and its reset time has passed)."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at < self.reset_seconds:
            return OPEN
        return HALF_OPEN

    def is_open(self) -> bool:
        """Whether a call now would be refused (open, or half-open with its trial running)."""
        with self._lock:
            state = self._state()
            return state == OPEN or (state == HALF_OPEN and self._trial_running)

    def allow(self) -> str | None:
        """The state a call may go ahead in (``closed`` or ``half-open``), or None if refused.

        In half-open only one caller at a time gets through: the trial.
        """
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return CLOSED
            if state == HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return HALF_OPEN
            return None

    def record_success(self) -> None:
        """The dependency answered: close."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def record_failure(self) -> None:
        """The dependency did not answer: count it, open at the threshold (or at once in trial)."""
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_running = False
