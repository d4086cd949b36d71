"""Whether this worker process is shutting down (SIGTERM), so running jobs hand over early.

App Engine and Cloud Run stop an instance with SIGTERM, then SIGKILL a few seconds
later (Cloud Run: 10 s; gunicorn's own graceful timeout: 30 s). gunicorn.conf.py
chains :func:`request_drain` to the worker process's SIGTERM handler; a running
durable job sees :func:`draining` at its next step boundary, checkpoint or
``ctx.check()`` and continues in a new request at once, instead of being killed and
waiting a lease out.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["draining", "install", "request_drain"]

_draining = threading.Event()


def request_drain() -> None:
    """Mark this process as shutting down."""
    _draining.set()


def draining() -> bool:
    """Whether this process was asked to shut down."""
    return _draining.is_set()


def install() -> None:
    """Chain :func:`request_drain` before the current SIGTERM handler (gunicorn's)."""
    previous: Any = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        request_drain()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    # As gunicorn does: SIGTERM must not interrupt the running request's system calls.
    signal.siginterrupt(signal.SIGTERM, False)
