"""Job types that only the tests use (loaded with OFFLOAD_JOB_MODULES=jobs,tests.testjobs)."""

from __future__ import annotations

import os
import time
from typing import Any

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


class Linger(BaseModel):
    children: int
    linger_seconds: float


@job("test.spawn_linger", payload=Linger, deadline_seconds=120, max_attempts=5)
def spawn_linger(ctx: JobContext, payload: Linger) -> dict[str, int]:
    """Spawn recorded demo.sleep children, then linger (a test kills the worker then)."""
    children = ctx.spawn_many("demo.sleep", [{"seconds": 0.2, "record": True}] * payload.children)
    if ctx.run_number == 1:  # only the run the test kills lingers
        ctx.logger.info("spawned %d children, lingering", len(children))
        time.sleep(payload.linger_seconds)
    return {"children": len(ctx.wait_for(children))}


class Kids(BaseModel):
    children: int
    fail_index: int = -1
    collect: bool = False


@job("test.fanout_fail", payload=Kids, deadline_seconds=60, max_attempts=2)
def fanout_fail(ctx: JobContext, payload: Kids) -> list[Any]:
    """Children of which one fails; the parent fails naming it, or collects the failure."""
    kids = [
        ("demo.fail", {"message": f"child {i} fails"})
        if i == payload.fail_index
        else ("demo.echo", {"i": i})
        for i in range(payload.children)
    ]
    ids = [ctx.spawn(kind, p, name=f"kid-{i}") for i, (kind, p) in enumerate(kids)]
    results = ctx.wait_for(ids, failures="collect" if payload.collect else "raise")
    return [r if not isinstance(r, Exception) else {"failed": r.job_id} for r in results]


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


class Where(BaseModel):
    path: str
    seconds: float = 0.0


@job("test.where", payload=Where, deadline_seconds=5, max_attempts=5)
def where(ctx: JobContext, payload: Where) -> int:
    """Sleep, then append ``<job id> <gunicorn master pid>``: where it ran, and how often."""
    time.sleep(payload.seconds)
    fd = os.open(payload.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.job_id} {os.getppid()}\n".encode())  # one write: lines never mix
    finally:
        os.close(fd)
    return os.getppid()


class Overrun(BaseModel):
    """A quick first step, then one that runs ``seconds`` (longer than a slice)."""

    seconds: float
    record: str


def _noted(record: str, name: str, seconds: float) -> str:
    with open(record, "a", encoding="utf-8") as f:
        f.write(name + "\n")
    time.sleep(seconds)
    return name


@job("test.overrun", payload=Overrun, deadline_seconds=600, max_attempts=2)
def overrun(ctx: JobContext, payload: Overrun) -> list[str]:
    """Its second step cannot fit any slice: DeadlineExceededError inside it, each run."""
    first = ctx.step("quick", _noted, payload.record, "quick", 0.0)
    second = ctx.step("slow", _noted, payload.record, "slow", payload.seconds)
    return [first, second]
