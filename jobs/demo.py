"""Example jobs, used by the README walkthrough, the tests and the benchmarks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import flask
from pydantic import BaseModel, ConfigDict, Field

from offload.context import JobContext
from offload.errors import PermanentError, TransientError
from offload.flaskapp import get_settings
from offload.registry import job


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SleepPayload(_Payload):
    seconds: float = Field(ge=0, le=3600, description="How long to sleep.")
    record: bool = Field(
        default=False,
        description="Append one line per execution (job id, start, end) to "
        "OFFLOAD_DEMO_DIR/demo.sleep.txt: the tests count executions from it.",
    )


class FanoutPayload(_Payload):
    children: int = Field(ge=0, le=10_000, description="How many demo.sleep children.")
    child_seconds: float = Field(ge=0, le=3600, description="How long each child sleeps.")
    record: bool = Field(default=False, description="The children record their executions.")


class ReportPayload(_Payload):
    accounts: int = Field(default=3, ge=1, le=1000, description="Accounts to summarize.")


class BusyPayload(_Payload):
    seconds: float = Field(ge=0, le=3600, description="How long to spin the CPU.")


class EchoPayload(BaseModel):
    model_config = ConfigDict(extra="allow")


class FlakyPayload(_Payload):
    failures: int = Field(ge=0, le=100, description="Attempts that fail before one succeeds.")


class FailPayload(_Payload):
    message: str = Field(default="this job always fails", max_length=500)


class LongPayload(_Payload):
    steps: int = Field(ge=1, le=1000, description="How many steps.")
    step_seconds: float = Field(ge=0, le=3600, description="How long each step sleeps.")


class IteratePayload(_Payload):
    items: int = Field(ge=0, le=1_000_000, description="How many items to process.")
    item_seconds: float = Field(ge=0, le=60, description="How long each item takes.")


@job("demo.sleep", payload=SleepPayload, deadline_seconds=30, max_attempts=3)
def sleep(ctx: JobContext, payload: SleepPayload) -> dict[str, Any]:
    """Sleep for `seconds`, reporting progress every second."""
    started = time.time()
    end = time.monotonic() + payload.seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        left = max(0.0, end - time.monotonic())
        ctx.progress(
            1 - left / max(payload.seconds, 1e-9),
            f"slept {payload.seconds - left:.0f} of {payload.seconds:g} seconds",
        )
    if payload.record:
        # Written by the job itself, after its work: one line per execution, whatever
        # the framework records.
        with open(_demo_dir() / "demo.sleep.txt", "a", encoding="utf-8") as f:
            f.write(f"{ctx.job_id} {started:.6f} {time.time():.6f}\n")
    return {"slept_seconds": payload.seconds}


@job("demo.fanout", payload=FanoutPayload, deadline_seconds=6 * 3600, max_attempts=3)
def fanout(ctx: JobContext, payload: FanoutPayload) -> dict[str, Any]:
    """Spawn `children` demo.sleep jobs of `child_seconds` each, wait for all, sum them."""
    child = {"seconds": payload.child_seconds, "record": payload.record}
    # One durable step: a later run gets the same ids back and creates nothing.
    children = ctx.spawn_many("demo.sleep", [child] * payload.children)
    # The run ends here while children are unfinished; the last one wakes the job.
    results = ctx.wait_for(children)
    return {"children": len(results), "total_slept": sum(r["slept_seconds"] for r in results)}


@job("demo.report", payload=ReportPayload, deadline_seconds=300, queue="offload-reports")
def report(ctx: JobContext, payload: ReportPayload) -> dict[str, Any]:
    """A report on its own queue (queue.yaml's offload-reports: slower, fewer at once)."""
    time.sleep(0.05 * payload.accounts)
    return {"accounts": payload.accounts, "queue": "offload-reports"}


@job("demo.busy", payload=BusyPayload, deadline_seconds=30, max_attempts=3)
def busy(ctx: JobContext, payload: BusyPayload) -> dict[str, Any]:
    """Spin the CPU in a Python loop for `seconds`."""
    end = time.monotonic() + payload.seconds
    loops = 0
    while time.monotonic() < end:
        loops += 1
    return {"loops": loops}


@job("demo.echo", payload=EchoPayload, deadline_seconds=10)
def echo(ctx: JobContext, payload: EchoPayload) -> dict[str, Any]:
    """Return the payload as the result."""
    return payload.model_dump()


@job("demo.flaky", payload=FlakyPayload, deadline_seconds=10, max_attempts=5)
def flaky(ctx: JobContext, payload: FlakyPayload) -> dict[str, Any]:
    """Fail transiently on the first `failures` attempts, then succeed."""
    if ctx.run <= payload.failures:
        raise TransientError(f"run {ctx.run} of {payload.failures} planned failures")
    return {"succeeded_on_attempt": ctx.run}


@job("demo.fail", payload=FailPayload, deadline_seconds=10)
def fail(ctx: JobContext, payload: FailPayload) -> None:
    """Fail permanently: never retried."""
    raise PermanentError(payload.message)


def _demo_dir() -> Path:
    """Where demo jobs keep their own records (OFFLOAD_DEMO_DIR), made if missing."""
    folder = Path(get_settings(flask.current_app).demo_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _long_step(record: str, index: int, seconds: float, ctx: JobContext) -> dict[str, int]:
    # One line per real execution of the body, written before the work: a step that a
    # kill interrupts and that runs again shows up twice, whatever the framework says.
    with open(record, "a", encoding="utf-8") as f:
        f.write(f"{index} {ctx.run_number}\n")
    ctx.logger.info("step %d running", index)
    time.sleep(seconds)
    return {"step": index}


@job("demo.long", payload=LongPayload, deadline_seconds=6 * 3600, max_attempts=5)
def long_steps(ctx: JobContext, payload: LongPayload) -> dict[str, Any]:
    """Run `steps` steps of `step_seconds` each through ctx.step, over as many runs as needed."""
    record = _demo_dir() / f"demo.long-{ctx.job_id}.txt"
    for i in range(payload.steps):
        # A step boundary: a finished step returns its stored result at once, and when
        # the run's slice is nearly spent the job continues in a new request here.
        ctx.step(str(i), _long_step, str(record), i, payload.step_seconds, ctx)
        ctx.progress((i + 1) / payload.steps, f"step {i + 1} of {payload.steps}")
    counts = {str(i): 0 for i in range(payload.steps)}
    for line in record.read_text(encoding="utf-8").splitlines():
        index = line.split(" ", 1)[0]
        if index in counts:
            counts[index] += 1
    return {"executions": counts}


@job("demo.iterate", payload=IteratePayload, deadline_seconds=6 * 3600, max_attempts=5)
def iterate(ctx: JobContext, payload: IteratePayload) -> dict[str, Any]:
    """Process `items` items of `item_seconds` each, resuming at the last ctx.checkpoint."""
    saved = ctx.saved  # None on the first run; else the cursor of the last checkpoint
    start, restarts = (0, 0) if saved is None else (saved["next"], saved["restarts"] + 1)
    if saved is not None:
        ctx.logger.info("resuming at item %d (restart %d)", start, restarts)
    for i in range(start, payload.items):
        # Saved before item i: a run that stops here (slice spent, or killed while on
        # item i) is resumed at item i by the next one.
        ctx.checkpoint({"next": i, "restarts": restarts})
        time.sleep(payload.item_seconds)  # the work on item i
        ctx.progress((i + 1) / payload.items, f"item {i + 1} of {payload.items}")
    return {"processed": payload.items, "restarts": restarts}
