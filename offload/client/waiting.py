"""Waiting for a job: its event stream, else long-polls, else polls at the service's pace."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import ServerSentEvent

# The decoders are what EventSource.iter_sse uses; fed here chunk by chunk so the wait's
# deadline is checked on every keep-alive comment too (iter_sse yields only events).
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from offload.client.errors import (
    InvalidRequestError,
    WaitTimeoutError,
    error_from_response,
)
from offload.client.models import Job, Progress

if TYPE_CHECKING:
    from offload.client.api import Client

__all__ = ["LONG_POLL_MAX_SECONDS", "wait_for"]

LONG_POLL_MAX_SECONDS = 60  # the most GET /jobs/{id}?wait=N accepts
STREAM_READ_TIMEOUT_SECONDS = 45.0  # well past the service's keep-alive comments
_MIN_POLL_GAP_SECONDS = 0.2
_HEALTHY_STREAM_SECONDS = 5.0
_MAX_RECONNECT_PAUSE_SECONDS = 5.0


class _Timeout(Exception):
    pass


class _Watch:
    """The latest known state of the job, reported to ``on_progress`` when it changes."""

    def __init__(self, job: Job, deadline: float | None, report: Callable[[Job], None] | None):
        self.job = job
        self.deadline = deadline
        self._report = report
        self._seen: tuple[Any, ...] | None = None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise _Timeout

    def sleep(self, seconds: float) -> None:
        left = self.remaining()
        time.sleep(max(0.0, seconds if left is None else min(seconds, left)))
        self.check()

    def update(self, job: Job) -> None:
        self.job = job
        key = (job.status, job.progress, job.attempts, job.cancel_requested)
        if key != self._seen:
            self._seen = key
            if self._report is not None:
                self._report(job)

    def apply(self, sse: ServerSentEvent) -> None:
        """Fold one event into the job: a job resource, or the fields the event names."""
        try:
            data = json.loads(sse.data) if sse.data else None
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        inner = data.get("job")
        if isinstance(inner, dict):
            data = inner
        if "id" in data and "status" in data and "type" in data:
            self.update(Job.from_dict({**self.job.raw, **data}))
            return
        changes: dict[str, Any] = {}
        if sse.event == "progress":
            progress = Progress.from_dict(data.get("progress", data))
            if progress is not None:
                changes["progress"] = progress
        # Only a status event names the job's status (a step event carries the step's).
        if sse.event == "status" and isinstance(data.get("status"), str):
            changes["status"] = data["status"]
            changes["reason"] = data.get("reason", self.job.reason)
        if isinstance(data.get("cancel_requested"), bool):
            changes["cancel_requested"] = data["cancel_requested"]
        if isinstance(data.get("attempts"), int):
            changes["attempts"] = data["attempts"]
        elif sse.event == "attempt" and isinstance(data.get("number"), int):
            changes["attempts"] = max(self.job.attempts, data["number"])
        if changes:
            self.update(dataclasses.replace(self.job, **changes))


def _events(response: httpx.Response, watch: _Watch) -> Iterator[ServerSentEvent]:
    lines, decoder = SSELineDecoder(), SSEDecoder()
    for text in response.iter_text():
        watch.check()
        for line in lines.decode(text):
            event = decoder.decode(line.rstrip("\n"))
            if event is not None:
                yield event
    for line in lines.flush():
        event = decoder.decode(line.rstrip("\n"))
        if event is not None:
            yield event


def _stream(client: Client, job_id: str, watch: _Watch) -> Job | None:
    """Follow the event stream to the ``finished`` event; None if the service has none."""
    last_event_id: str | None = None
    failures = 0
    pause = 0.0
    # The stream replays the job's history from its first event: start from no progress,
    # so on_progress sees queued, running, progress in order, never a step back.
    watch.job = dataclasses.replace(watch.job, progress=None)
    while True:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id  # what was missed, nothing twice
        left = watch.remaining()
        read = STREAM_READ_TIMEOUT_SECONDS if left is None else min(left + 0.1, 45.0)
        got_events = False
        opened = time.monotonic()
        try:
            with client.http.stream(
                "GET",
                f"/jobs/{job_id}/events",
                headers=headers,
                timeout=httpx.Timeout(client.timeout, read=read),
            ) as response:
                kind = response.headers.get("content-type", "").partition(";")[0].strip()
                if response.status_code != 200 or kind != "text/event-stream":
                    response.read()
                    if response.status_code in (401, 403):
                        raise error_from_response(response)
                    return None  # no event stream here (an older service): fall back
                for sse in _events(response, watch):
                    if sse.retry is not None:
                        pause = min(sse.retry / 1000, _MAX_RECONNECT_PAUSE_SECONDS)
                    if not (sse.id or sse.data):
                        continue  # a bare "retry:" field: not an event of the job
                    got_events = True
                    if sse.id:
                        last_event_id = sse.id
                    watch.apply(sse)
                    if sse.event == "finished" and watch.job.finished:
                        return watch.job
        except httpx.TransportError:
            watch.check()
        # Cut (a proxy or the platform's request timeout) or ended early: resume from the
        # last event id; a stream that keeps failing without events hands over to polling.
        # A stream that stayed open a while (quiet job, ended by the service's bound) is
        # healthy too; only quick failures count towards giving up on streams.
        healthy = got_events or time.monotonic() - opened >= _HEALTHY_STREAM_SECONDS
        failures = 0 if healthy else failures + 1
        if failures > client.retries:
            return None
        # The service's "retry:" hint between healthy streams, a backoff after failures.
        watch.sleep(client.backoff(failures - 1) if failures else pause)


def _poll(client: Client, job_id: str, watch: _Watch) -> Job:
    """Long-poll until the job finishes; where long-polls are not held, poll at Retry-After."""
    use_wait, held = True, False
    while True:
        left = watch.remaining()
        wait = int(min(LONG_POLL_MAX_SECONDS, left if left is not None else 1e9))
        params = {"wait": wait} if use_wait and wait >= 1 else {}
        started = time.monotonic()
        try:
            response = client.request(
                "GET",
                f"/jobs/{job_id}",
                params=params,
                timeout=httpx.Timeout(client.timeout, read=client.timeout + wait),
            )
        except InvalidRequestError:
            if not params:
                raise
            use_wait = False  # a service that refuses ?wait: plain polling
            continue
        job = Job.from_dict(response.json())
        watch.update(job)
        if job.finished:
            return job
        took = time.monotonic() - started
        if params and took >= wait / 2:
            held = True  # the service holds long-polls: ask again at once
            watch.check()
            continue
        try:
            hint = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            hint = 1.0
        watch.sleep(_MIN_POLL_GAP_SECONDS if held else max(_MIN_POLL_GAP_SECONDS, hint))


def wait_for(
    client: Client,
    job_id: str,
    *,
    timeout: float | None,
    on_progress: Callable[[Job], None] | None,
) -> Job:
    """Wait until the job has finished (see :meth:`Client.wait`)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watch = _Watch(client.get(job_id), deadline, on_progress)
    if watch.job.finished:
        watch.update(watch.job)
        return watch.job
    try:
        job = _stream(client, job_id, watch)
        if job is not None:
            return job
        return _poll(client, job_id, watch)
    except _Timeout:
        raise WaitTimeoutError(
            f"job {job_id} still {watch.job.status} after {timeout:g}s", watch.job
        ) from None
