"""Small helpers for the raw protobuf messages behind the proto-plus types."""

from __future__ import annotations

from typing import Any

from google.cloud import tasks_v2
from google.protobuf import empty_pb2

# The raw (upb) message classes: faster and smaller than the proto-plus wrappers,
# which matters with 100,000 tasks in memory.
Queue: Any = tasks_v2.Queue.pb()
Task: Any = tasks_v2.Task.pb()
Attempt: Any = tasks_v2.Attempt.pb()
Empty: Any = empty_pb2.Empty

QUEUE_RUNNING = 1
QUEUE_PAUSED = 2
QUEUE_DISABLED = 3
VIEW_BASIC = 1
VIEW_FULL = 2

METHOD_NAMES = {
    0: "POST",
    1: "POST",
    2: "GET",
    3: "HEAD",
    4: "PUT",
    5: "DELETE",
    6: "PATCH",
    7: "OPTIONS",
}


def ts_get(ts: Any) -> float:
    """A Timestamp as float seconds since the epoch."""
    return float(ts.seconds) + float(ts.nanos) / 1e9


def ts_set(ts: Any, when: float) -> None:
    """Set a Timestamp from float seconds since the epoch."""
    seconds = int(when)
    ts.seconds = seconds
    ts.nanos = int((when - seconds) * 1e9)


def dur_set(d: Any, seconds: float) -> None:
    """Set a Duration from float seconds."""
    whole = int(seconds)
    d.seconds = whole
    d.nanos = int(round((seconds - whole) * 1e9))


def dur_get(d: Any) -> float:
    """A Duration as float seconds."""
    return float(d.seconds) + float(d.nanos) / 1e9


def task_view(task: Any, view: int) -> Any:
    """The task as the API returns it: BASIC (the default) omits the body."""
    out = Task()
    out.CopyFrom(task)
    if view == VIEW_FULL:
        out.view = VIEW_FULL
        return out
    out.view = VIEW_BASIC
    if out.HasField("http_request"):
        out.http_request.ClearField("body")
    elif out.HasField("app_engine_http_request"):
        out.app_engine_http_request.ClearField("body")
    return out
