"""Example jobs, used by the README walkthrough, the tests and the benchmarks."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload.context import JobContext
from offload.errors import PermanentError, TransientError
from offload.registry import job


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SleepPayload(_Payload):
    seconds: float = Field(ge=0, le=3600, description="How long to sleep.")


class BusyPayload(_Payload):
    seconds: float = Field(ge=0, le=3600, description="How long to spin the CPU.")


class EchoPayload(BaseModel):
    model_config = ConfigDict(extra="allow")


class FlakyPayload(_Payload):
    failures: int = Field(ge=0, le=100, description="Attempts that fail before one succeeds.")


class FailPayload(_Payload):
    message: str = Field(default="this job always fails", max_length=500)


@job("demo.sleep", payload=SleepPayload, deadline_seconds=30, max_attempts=3)
def sleep(ctx: JobContext, payload: SleepPayload) -> dict[str, Any]:
    """Sleep for `seconds`, reporting progress every second."""
    end = time.monotonic() + payload.seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        left = max(0.0, end - time.monotonic())
        ctx.progress(
            1 - left / max(payload.seconds, 1e-9),
            f"slept {payload.seconds - left:.0f} of {payload.seconds:g} seconds",
        )
    return {"slept_seconds": payload.seconds}


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
