"""Request ids and traces: taken from the request (when safe), echoed, put on every log line.

The request id comes from a valid incoming ``X-Request-ID``, else App Engine's
``X-Appengine-Request-Log-Id``, else a new one. Only a restricted character set and
length are accepted, so nothing a client sends can break a log line or a header.
The trace comes from ``traceparent``, else ``X-Cloud-Trace-Context``, else a new one.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping

from flask import Flask, Response, current_app, g, request
from werkzeug.datastructures import Headers

from offload.logs import log_context
from offload.platform import APP_ENGINE
from offload.tracecontext import TraceContext, parse_traceparent

HeaderMap = Mapping[str, str] | Headers

__all__ = [
    "HeaderMap",
    "TraceContext",
    "current_request_id",
    "current_trace",
    "init_app",
    "is_valid_request_id",
    "parse_trace",
    "pick_request_id",
]

log = logging.getLogger("offload.access")

REQUEST_ID_HEADER = "X-Request-ID"
APPENGINE_LOG_ID = "X-Appengine-Request-Log-Id"
# fullmatch everywhere: ``$`` would also accept a value ending in a newline.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")


def new_request_id() -> str:
    """A fresh request id (32 hex characters)."""
    return os.urandom(16).hex()


def is_valid_request_id(value: str) -> bool:
    """Whether ``value`` is a request id we accept: 1-128 of ``[A-Za-z0-9._:-]``."""
    return _REQUEST_ID.fullmatch(value) is not None


def pick_request_id(headers: HeaderMap, *, on_app_engine: bool = False) -> str:
    """The request id: a valid ``X-Request-ID``, else App Engine's log id, else a new one.

    App Engine's log id only ``on_app_engine``: elsewhere nothing strips the header,
    and a forged one would choose the id under which a request is logged.
    """
    names = (REQUEST_ID_HEADER, APPENGINE_LOG_ID) if on_app_engine else (REQUEST_ID_HEADER,)
    for name in names:
        value = headers.get(name)
        if value and is_valid_request_id(value):
            return value
    return new_request_id()


def _on_app_engine() -> bool:
    settings = current_app.extensions.get("offload.settings")  # none: not an Offload app
    return settings is not None and bool(settings.platform == APP_ENGINE)


def parse_trace(headers: HeaderMap) -> TraceContext:
    """The incoming trace (``traceparent``, else ``X-Cloud-Trace-Context``), else a new one."""
    parsed = parse_traceparent(headers.get("traceparent"))
    if parsed is not None:
        return parsed
    match = _CLOUD_TRACE.fullmatch(headers.get("X-Cloud-Trace-Context", "").strip())
    if match:
        span = int(match.group(2) or 0) & (2**64 - 1)
        span_hex = f"{span:016x}" if span else os.urandom(8).hex()
        return TraceContext(match.group(1).lower(), span_hex, match.group(3) == "1")
    return TraceContext(os.urandom(16).hex(), os.urandom(8).hex(), False)


def current_request_id() -> str:
    """The request id of the request being handled."""
    if "request_id" not in g:  # asked before our before_request ran
        g.request_id = pick_request_id(request.headers, on_app_engine=_on_app_engine())
    value: str = g.request_id
    return value


def current_trace() -> TraceContext:
    """The trace of the request being handled."""
    value: TraceContext = g.trace
    return value


def init_app(app: Flask) -> None:
    """Give every request an id and a trace, label its log lines, and log one access line."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()
        g.request_id = pick_request_id(request.headers, on_app_engine=_on_app_engine())
        g.trace = parse_trace(request.headers)
        ctx = log_context(
            request_id=g.request_id,
            trace=g.trace.trace_id,
            span_id=g.trace.span_id,
            trace_sampled=g.trace.sampled,
            collect=True,
        )
        g.log_labels = ctx.__enter__().collected
        g.log_context = ctx
        offered = request.headers.get(REQUEST_ID_HEADER)
        if offered is not None and offered != g.request_id:
            # Never the value itself: it is exactly what must not reach a log line.
            log.info("ignored an invalid X-Request-ID header (%d characters)", len(offered))

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = current_request_id()
        started = g.get("request_started")
        latency = time.perf_counter() - started if started is not None else 0.0
        # 5xx answers (a worker asking Cloud Tasks to retry, say) stand out; errors with a
        # stack trace were logged at ERROR where they happened.
        log.log(
            logging.WARNING if response.status_code >= 500 else logging.INFO,
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "labels": dict(g.get("log_labels") or {}),
                "http_request": {
                    "requestMethod": request.method,
                    "requestUrl": request.url,
                    "status": response.status_code,
                    "latency": f"{latency:.6f}s",
                    "userAgent": request.user_agent.string,
                    "remoteIp": request.remote_addr,
                    "requestSize": str(request.content_length or 0),
                    # A streamed answer (the event stream) is not drained to measure it.
                    "responseSize": str(
                        0 if response.is_streamed else (response.calculate_content_length() or 0)
                    ),
                    "protocol": request.environ.get("SERVER_PROTOCOL"),
                },
            },
        )
        return response

    @app.teardown_request
    def _end(_exc: BaseException | None) -> None:
        ctx = g.pop("log_context", None)
        if ctx is not None:
            ctx.__exit__(None, None, None)
