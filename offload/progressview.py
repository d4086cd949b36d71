"""The live view of a job being waited for: a rich progress bar on a terminal, lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from offload.client.models import Job
from offload.termsafe import escape

__all__ = ["ProgressView"]


def _percent(job: Job) -> str:
    return f"{job.progress.fraction * 100:3.0f}%" if job.progress is not None else "   -"


def _status(job: Job) -> str:
    # A retried job says which attempt it is on; a first attempt needs no mention.
    return escape(job.status) + (f", attempt {job.attempts}" if job.attempts > 1 else "")


def _message(job: Job) -> str:
    return escape(job.progress.message) if job.progress and job.progress.message else ""


class ProgressView:
    """Shows each change of a job: a live bar (status, percent, message, elapsed) or a line."""

    def __init__(self, stream: TextIO, job: Job, *, live: bool | None = None) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.live = stream.isatty() if live is None else live
        self._progress = None
        self._task = None
        self._last_line = ""
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=stream, highlight=False)
            console.print(escape(f"job {job.id} ({job.type})"), markup=False)
            # markup=False: a job's message is data; "[red]" in it must print as written.
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                TextColumn("{task.fields[status]}", markup=False),
                BarColumn(bar_width=24),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[message]}", markup=False),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(
                escape(job.type), total=None, status="", message=""
            )
            self._progress.start()
        self.update(job)

    def update(self, job: Job) -> None:
        """Show the job's latest state."""
        if self._progress is not None and self._task is not None:
            done = job.status == "succeeded"
            fraction = 1.0 if done else (job.progress.fraction if job.progress else None)
            self._progress.update(
                self._task,
                total=None if fraction is None else 1.0,
                completed=fraction or 0.0,
                status=_status(job),
                message=_message(job),
            )
            return
        shown = f"{escape(job.id)} {_status(job):20} {_percent(job)} {_message(job)}"
        if shown == self._last_line:
            return  # a change the line does not show (an attempt number, say)
        self._last_line = shown
        elapsed = time.monotonic() - self.started
        print(f"{elapsed:6.1f}s {shown}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        """Leave the last state on screen and stop refreshing."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
