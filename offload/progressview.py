"""The live view of a job being waited for: a rich progress bar on a terminal, lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO

from offload.client.models import Job
from offload.termtext import escape

__all__ = ["ProgressView"]


def _percent(job: Job) -> str:
    return f"{job.progress.fraction * 100:3.0f}%" if job.progress is not None else "   -"


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

            # markup=False: a job's message is data; "[red]" in it must print as written.
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                TextColumn("{task.fields[status]}", markup=False),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[message]}", markup=False),
                console=Console(file=stream, highlight=False),
                transient=False,
            )
            self._task = self._progress.add_task(
                escape(f"{job.type} {job.id}"), total=None, status="", message=""
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
                status=escape(job.status),
                message=_message(job),
            )
            return
        elapsed = time.monotonic() - self.started
        line = f"{elapsed:6.1f}s {escape(job.id)} {escape(job.status):9} {_percent(job)}"
        message = _message(job)
        print(f"{line} {message}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        """Leave the last state on screen and stop refreshing."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
