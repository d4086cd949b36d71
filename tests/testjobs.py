"""Job types that only the tests use (loaded with OFFLOAD_JOB_MODULES=jobs,tests.testjobs)."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from offload.context import JobContext
from offload.errors import DeadlineExceededError
from offload.registry import job


class Seconds(BaseModel):
    seconds: float


@job("test.stubborn", payload=Seconds, deadline_seconds=1, max_attempts=2)
def stubborn(ctx: JobContext, payload: Seconds) -> None:
    """Swallow DeadlineExceededError and keep sleeping: only the hard limit stops it."""
    end = time.monotonic() + payload.seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except DeadlineExceededError:
            pass


@job("test.stuck", payload=Seconds, deadline_seconds=1, max_attempts=2)
def stuck(ctx: JobContext, payload: Seconds) -> int:
    """Spin inside one C call (sum over a huge range): no signal handler runs meanwhile."""
    return sum(range(10**13))


class Depth(BaseModel):
    levels: int


@job("test.deep_result", payload=Depth, deadline_seconds=5, max_attempts=2)
def deep_result(ctx: JobContext, payload: Depth) -> object:
    """Return a value nested ``levels`` deep (results are bounded like requests)."""
    value: object = {}
    for _ in range(payload.levels):
        value = {"a": value}
    return value


class Mark(BaseModel):
    path: str
    gate: str | None = None


@job("test.mark", payload=Mark, deadline_seconds=10, max_attempts=3)
def mark(ctx: JobContext, payload: Mark) -> dict[str, bool]:
    """Append the job's id to a file each time its body runs, then wait for the gate file.

    The tests count runs from this file, not from what the framework says it did.
    """
    with open(payload.path, "a") as f:
        f.write(ctx.job_id + "\n")  # one short write: lines of several processes never mix
    while payload.gate and not os.path.exists(payload.gate):
        time.sleep(0.05)  # DeadlineExceededError ends a gate that never opens
    return {"ok": True}
