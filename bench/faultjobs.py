"""The fault suite's job type: its own side effect counts how often it really ran.

``fault.mark`` sleeps, then appends one line with its job id to the file named by
``OFFLOAD_FAULT_MARKS``: a job that ran to completion twice leaves two lines, whatever
the framework recorded. Loaded only by the fault suite (``jobs,bench.faultjobs``).
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, ConfigDict, Field

from offload.context import JobContext
from offload.registry import job

MARKS_VARIABLE = "OFFLOAD_FAULT_MARKS"


class Mark(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=0.0, ge=0, le=20)


@job("fault.mark", payload=Mark, deadline_seconds=30, max_attempts=5)
def mark(ctx: JobContext, payload: Mark) -> dict[str, bool]:
    """Sleep ``seconds``, then append this job's id to the marks file (one line per run)."""
    end = time.monotonic() + payload.seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(0.2, left))
    # One write(2) with O_APPEND: lines of concurrent runs never mix.
    fd = os.open(os.environ[MARKS_VARIABLE], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.job_id}\n".encode())
    finally:
        os.close(fd)
    return {"marked": True}
