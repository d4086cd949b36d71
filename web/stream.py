"""The live event stream of a job.

``GET /jobs/{id}/events`` is Server-Sent Events: one event per row of the job's event
log, each with its ``id:``, so a client reconnecting with ``Last-Event-ID`` gets what
it missed and nothing twice; ``finished`` carries the job resource and ends the stream.
It waits on the process's :class:`~web.waiting.EventHub`, never in a query loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request, stream_with_context

from offload.flaskapp import get_settings, get_store
from offload.problems import ProblemError
from offload.store.events import FINISHED_EVENT, Event
from web.jobs import visible_job
from web.longpoll import get_hub

__all__ = ["bp", "event_stream"]

bp = Blueprint("stream", __name__)


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or len(raw) > 18:
        raise ProblemError.validation(
            [
                {
                    "loc": ["header", "Last-Event-ID"],
                    "msg": "must be the id of an event this stream sent",
                    "type": "int_parsing",
                }
            ],
            "Last-Event-ID is not an event id",
        )
    return int(raw)


def _frame(event: Event, data: object) -> str:
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {body}\n\n"


def event_stream(job_id: str, after: int) -> Iterator[str]:
    """The SSE frames of a job's events after ``after``, until ``finished`` or a bound."""
    app = current_app
    store = get_store(app)
    keepalive = get_settings(app).events_keepalive_seconds
    end = time.monotonic() + get_settings(app).stream_max_seconds
    # Tell EventSource clients to come back after 1 s if the connection drops.
    yield "retry: 1000\n\n"
    with get_hub().watch(job_id) as signal:
        while True:
            signal.clear()
            for event in store.events.after(job_id, after, limit=500):
                after = event.id
                if event.kind == FINISHED_EVENT:
                    job = store.get(job_id)
                    yield _frame(event, job.to_resource() if job else event.data)
                    return
                yield _frame(event, event.data)
            left = end - time.monotonic()
            if left <= 0:
                # Ends before the platform cuts it; the client resumes with Last-Event-ID.
                return
            if not signal.wait(min(keepalive, left)):
                yield ": keep-alive\n\n"


@bp.get("/jobs/<job_id>/events")
def stream_job_events(job_id: str) -> Response:
    """The job's events as Server-Sent Events, from ``Last-Event-ID`` on."""
    after = _last_event_id()
    job = visible_job(job_id)
    if get_hub().full:
        raise ProblemError(
            503,
            "Service Unavailable",
            "this instance has as many open event streams as it serves; reconnect shortly",
            slug="too-many-waiters",
            headers={"Retry-After": "1"},
        )
    response = Response(
        stream_with_context(event_stream(job.id, after)), mimetype="text/event-stream"
    )
    response.headers["Cache-Control"] = "no-store"
    # Proxies that buffer (nginx and kin) pass the stream through as it is written.
    response.headers["X-Accel-Buffering"] = "no"
    return response
