"""Long-poll: ``GET /jobs/{id}?wait=N`` answers when the job finishes or after N seconds.

It waits on the process's :class:`~web.waiting.EventHub`, never in a query loop, so the
answer comes within the hub's poll interval (0.2 s) of the finish.
"""

from __future__ import annotations

import time

from flask import Flask, current_app, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offload.flaskapp import get_settings, get_store
from offload.problems import ProblemError, validation_errors
from offload.store import Job
from offload.store.events import FINISHED_EVENT
from web.waiting import EventHub

__all__ = ["MAX_WAIT_SECONDS", "get_hub", "init_app", "long_poll", "wait_seconds"]

MAX_WAIT_SECONDS = 60


class _WaitQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    wait: float | None = Field(default=None, ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)


def init_app(app: Flask) -> None:
    """Give the app its event hub (its thread starts with the first waiter)."""
    store = get_store(app)
    # Three quarters of the process's threads at most wait; the rest serve the others.
    settings = get_settings(app)
    max_waiters = max(settings.web_threads * 3 // 4, 1)
    app.extensions["offload.event_hub"] = hub = EventHub.for_dialect(
        store.events,
        store.dialect,
        poll_seconds=settings.events_poll_seconds,
        max_waiters=max_waiters,
    )
    store.on_dispose.append(hub.close)


def get_hub() -> EventHub:
    """The current app's event hub."""
    hub: EventHub = current_app.extensions["offload.event_hub"]
    return hub


def wait_seconds() -> float | None:
    """The request's ``wait`` query parameter (seconds, at most 60), or a 422."""
    if "wait" not in request.args:
        return None
    try:
        return _WaitQuery.model_validate({"wait": request.args["wait"]}).wait
    except ValidationError as e:
        raise ProblemError.validation(
            validation_errors(e, ["query"]), f"wait must be 0 to {MAX_WAIT_SECONDS} seconds"
        ) from None


def long_poll(job: Job, seconds: float) -> Job:
    """The job once it has finished, or as it is after ``seconds``.

    When the process already has its share of waiters, the answer is the job as it is
    now (with Retry-After), which a client handles like an ended wait.
    """
    if job.finished or seconds <= 0 or get_hub().full:
        return job
    store = get_store(current_app)
    end = time.monotonic() + seconds
    last = 0
    with get_hub().watch(job.id) as signal:
        while True:
            signal.clear()
            new = store.events.after(job.id, last, limit=1000)
            if new:
                last = new[-1].id
                if any(e.kind == FINISHED_EVENT for e in new):
                    break
            left = end - time.monotonic()
            if left <= 0:
                break
            signal.wait(left)
    return store.get(job.id) or job
