"""What the client commands print: job summaries, JSON, escaped text on stdout and stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from offload.client import Job
from offload.termsafe import escape

__all__ = ["describe", "dump", "err", "out", "when"]


def err(text: str) -> None:
    """Print a line on stderr, control characters escaped."""
    print(escape(text), file=sys.stderr, flush=True)


def out(text: str) -> None:
    """Print on stdout, control characters escaped (newlines kept)."""
    print(escape(text, keep_newlines=True), flush=True)


def dump(value: Any) -> str:
    """JSON with every non-ASCII and control character escaped."""
    # ensure_ascii: control characters and anything unusual come out as \u escapes.
    return json.dumps(value, ensure_ascii=True)


def when(job: Job, name: str) -> str:
    """A timestamp field of the job as sent, or a dash."""
    value = job.raw.get(name)
    return str(value) if value else "-"


def describe(job: Job) -> list[str]:
    """The lines of `offload jobs show`."""
    progress = "-"
    if job.progress is not None:
        progress = f"{job.progress.fraction * 100:.0f}%"
        if job.progress.message:
            progress += f" {job.progress.message}"
    lines = [
        f"job       {job.id}",
        f"type      {job.type}",
        f"status    {job.status}" + (f" ({job.reason})" if job.reason else ""),
        f"progress  {progress}",
        f"attempts  {job.attempts} of {job.max_attempts}",
        f"created   {when(job, 'created_at')}",
        f"started   {when(job, 'first_started_at')} (first run), "
        f"{when(job, 'started_at')} (last run)",
        f"finished  {when(job, 'finished_at')}",
        f"request   {job.request_id or '-'}",
    ]
    if job.resubmit_of:
        lines.append(f"resubmit  of {job.resubmit_of}")
    if job.error is not None:
        lines.append(f"error     {job.error.type}: {job.error.message}")
    if job.status == "succeeded":
        lines.append(f"result    {dump(job.result)}")
    return lines
