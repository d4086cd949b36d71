"""Soft deadlines that interrupt the running job, as App Engine's runtime once did.

Python 3 runtimes raise no deadline error by themselves, so the worker arms a POSIX
interval timer: when the budget is spent, ``SIGALRM`` runs a handler in the main thread
that raises :class:`~offload.errors.DeadlineExceededError` wherever the job is, also
inside ``time.sleep``, a socket read or a pure-Python loop (PEP 475 lets a handler's
exception end a blocking call).

What it cannot interrupt: a long call into C that does not return to the interpreter
(a huge regex, a C extension's loop). The hard limit covers that and a job that
swallows the error: ``hard_grace`` seconds after the deadline the second alarm ends the
process (gunicorn's arbiter starts a new worker, Cloud Tasks sees the attempt fail and
retries, and the next delivery closes the attempt as interrupted). Gunicorn's own
``--timeout`` is the last backstop.

Signals reach only the main thread, so the worker runs gunicorn *sync* workers (one
request per process, in its main thread). Elsewhere :func:`enforce` still returns a
deadline that jobs can poll (``ctx.deadline.remaining()``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from offload.errors import DeadlineExceededError

__all__ = ["Deadline", "enforce", "hard_exit"]

log = logging.getLogger(__name__)


class Deadline:
    """A point in time a job must finish by (monotonic clock)."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.started_at = clock()
        self.expires_at = self.started_at + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - self._clock())

    def expired(self) -> bool:
        """Whether the budget is spent."""
        return self._clock() >= self.expires_at

    def check(self) -> None:
        """Raise DeadlineExceededError if the budget is spent (a job's own checkpoint)."""
        if self.expired():
            raise DeadlineExceededError(f"deadline of {self.seconds:g}s exceeded")


def hard_exit() -> None:
    """End this process at once (after flushing the logs)."""
    # The job ignored its deadline; nothing in this process can be trusted to unwind.
    log.critical("job still running after its deadline and grace: ending the worker process")
    logging.shutdown()
    os._exit(70)


@contextlib.contextmanager
def enforce(
    deadline: Deadline,
    *,
    hard_grace: float = 0.0,
    on_hard_limit: Callable[[], None] = hard_exit,
) -> Iterator[Deadline]:
    """Raise DeadlineExceededError inside the block when ``deadline`` passes.

    With ``hard_grace`` > 0, a block still running that long after the deadline calls
    ``on_hard_limit`` (by default: end the process).
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("deadline not enforced: job is not running in the main thread")
        yield deadline
        return

    fired = False

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            if hard_grace > 0:
                signal.setitimer(signal.ITIMER_REAL, hard_grace)
            raise DeadlineExceededError(f"deadline of {deadline.seconds:g}s exceeded")
        on_hard_limit()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(deadline.remaining(), 1e-3))
    try:
        yield deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
