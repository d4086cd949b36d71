"""Log lines about one task, labelled with its own request id and trace."""

from __future__ import annotations

import logging
from typing import Any

from offload.logs import log_context
from offload.tracecontext import parse_traceparent

logger = logging.getLogger("emulator.state")


def task_log_context(pb: Any, *, task: str, attempt: int | None = None) -> Any:
    """A log context with the task's own ``X-Request-ID`` and ``traceparent`` (if any)."""
    req: Any = pb.http_request if pb.HasField("http_request") else pb.app_engine_http_request
    request_id = traceparent = None
    for name, value in req.headers.items():
        low = name.lower()
        if low == "x-request-id":
            request_id = value
        elif low == "traceparent":
            traceparent = value
    trace = parse_traceparent(traceparent)
    return log_context(
        request_id=request_id,
        trace=trace.trace_id if trace else None,
        span_id=trace.span_id if trace else None,
        trace_sampled=trace.sampled if trace else False,
        task=task,
        attempt=attempt,
    )


def log_created(pb: Any, task_id: str) -> None:
    """The "task created" line."""
    with task_log_context(pb, task=task_id):
        logger.info(
            "task %s created, first dispatch at %s", task_id, pb.schedule_time.ToJsonString()
        )


def log_deleted(pb: Any, task_id: str, why: str) -> None:
    """The "task deleted" line (why: DeleteTask, BatchDeleteTasks, PurgeQueue, DeleteQueue)."""
    with task_log_context(pb, task=task_id):
        logger.info("task %s deleted by %s", task_id, why)
