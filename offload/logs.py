"""Structured logs in Cloud Logging's shape, with the request's labels on every line.

Every process (web, worker, emulator) calls :func:`configure_logging` once at start.
Lines go to stdout in the JSON shape of google-cloud-logging's ``StructuredLogHandler``
(the agent on App Engine and Cloud Run parses them), built once per record by
:class:`CloudLineFormatter`, and, locally, to a size-bounded JSON file as well, which
``offload logs REQUEST_ID`` reads.

The labels of the work in progress (``request_id``, ``job_id``, ``task``, ``attempt`` ...)
live in a context variable set by :func:`log_context`; a filter copies them, and the
trace, onto each record, so a plain ``logger.info("...")`` carries them.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # only an annotation: the emulator imports this module without pydantic
    from offload.settings import Settings

__all__ = [
    "LABELS",
    "LogContext",
    "SharedRotatingFileHandler",
    "configure_logging",
    "configure_logging_from",
    "current_context",
    "log_context",
    "parse_line",
    "reset_logging_for_tests",
]

LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"
SPAN_ID = "logging.googleapis.com/spanId"
TRACE_SAMPLED = "logging.googleapis.com/trace_sampled"
SOURCE_LOCATION = "logging.googleapis.com/sourceLocation"
LABEL_KEYS = ("request_id", "job_id", "job_type", "task", "attempt", "service")
# Labels that, once known inside a request, also belong on its access line.
_STICKY = frozenset({"job_id", "job_type", "task", "attempt"})


class LogContext:
    """Labels and trace of the work this thread or task is doing now."""

    __slots__ = ("labels", "trace", "span_id", "trace_sampled", "collected")

    def __init__(
        self,
        labels: Mapping[str, str] | None = None,
        trace: str | None = None,
        span_id: str | None = None,
        trace_sampled: bool = False,
        collected: dict[str, str] | None = None,
    ) -> None:
        self.labels: dict[str, str] = dict(labels or {})
        self.trace = trace
        self.span_id = span_id
        self.trace_sampled = trace_sampled
        # Shared by a collecting context and all nested ones (see ``log_context(collect=)``).
        self.collected = collected


_context: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "offload_log_context", default=None
)


def current_context() -> LogContext | None:
    """The log context of the work in progress, if any."""
    return _context.get()


@contextlib.contextmanager
def log_context(
    *,
    trace: str | None = None,
    span_id: str | None = None,
    trace_sampled: bool | None = None,
    collect: bool = False,
    **labels: object,
) -> Iterator[LogContext]:
    """Add labels (and optionally a trace) to every line logged inside the block.

    With ``collect=True`` the context gathers the job labels (``job_id``, ``job_type``,
    ``task``, ``attempt``) set by nested blocks in ``ctx.collected``, so a line written
    after they ended (a request's access line) can carry them too.
    """
    parent = _context.get()
    merged = dict(parent.labels) if parent else {}
    added = {k: str(v) for k, v in labels.items() if v is not None}
    merged.update(added)
    collected = {} if collect else (parent.collected if parent else None)
    if collected is not None:
        collected.update({k: v for k, v in added.items() if k in _STICKY})
    ctx = LogContext(
        merged,
        trace if trace is not None else (parent.trace if parent else None),
        span_id if span_id is not None else (parent.span_id if parent else None),
        trace_sampled if trace_sampled is not None else (parent.trace_sampled if parent else False),
        collected,
    )
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    """Copy the context's labels and trace onto the record before it is formatted.

    Trace and ``http_request`` come only from the context or the caller's ``extra``,
    never from the raw request headers (unvalidated input), so only the access line
    has an httpRequest.
    """

    def __init__(self, service: str, project_id: str) -> None:
        super().__init__()
        self.service = service
        self.project_id = project_id

    def filter(self, record: logging.LogRecord) -> bool:
        if "_offload_line" in record.__dict__:
            return True  # filtered and formatted already for the other handler
        ctx = _context.get()
        labels: dict[str, str] = {"service": self.service}
        if ctx is not None:
            labels.update(ctx.labels)
        if not hasattr(record, "trace"):
            trace = ctx.trace if ctx is not None else None
            record.trace = f"projects/{self.project_id}/traces/{trace}" if trace else None
            record.span_id = (ctx.span_id if ctx is not None else None) or None
            record.trace_sampled = bool(ctx is not None and ctx.trace_sampled)
        if not hasattr(record, "http_request"):
            record.http_request = None
        extra = getattr(record, "labels", None)
        if isinstance(extra, Mapping):
            labels.update({str(k): str(v) for k, v in extra.items()})
        record.labels = labels
        return True


# Fields the Cloud Logging agent reads itself: a mapping message never overrides them.
_SPECIAL_FIELDS = frozenset(
    {
        "severity",
        "httpRequest",
        "time",
        "timestamp",
        "timestampSeconds",
        "timestampNanos",
        "logging.googleapis.com/insertId",
        LABELS,
        "logging.googleapis.com/operation",
        SOURCE_LOCATION,
        SPAN_ID,
        TRACE,
        TRACE_SAMPLED,
    }
)
# One C encoder for every line (json.dumps with options builds a new one per call).
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _payload(record: logging.LogRecord, text: str) -> dict[Any, Any]:
    """The line's own fields, as StructuredLogHandler derives them from the record.

    A mapping message (or a message that is a JSON object) gives its keys; ``json_fields``
    adds to it; otherwise the formatted text (traceback included) is ``message``.
    """
    fields = getattr(record, "json_fields", None)
    message: Any = record.msg
    if isinstance(message, Mapping):
        if isinstance(fields, Mapping) and fields:
            message = {**message, **fields}
    else:
        message = text
        if text[:1] == "{":
            with contextlib.suppress(ValueError):
                parsed = json.loads(text)
                if isinstance(parsed, Mapping):
                    message = parsed
        if isinstance(fields, Mapping) and fields:
            extra = dict(fields)
            if message != "None":
                extra["message"] = message
            message = extra
    if isinstance(message, Mapping):
        return {k: v for k, v in message.items() if k not in _SPECIAL_FIELDS}
    return {"message": message} if message and message != "None" else {}


class CloudLineFormatter(logging.Formatter):
    """A record as one Cloud Logging JSON line, built and encoded once.

    The same fields and order as google-cloud-logging's ``StructuredLogHandler`` gave
    (``time`` first, empty trace and httpRequest left out), without its second pass
    through ``json.loads``/``json.dumps`` or its request-environment lookup.
    """

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_offload_line")
        if isinstance(cached, str):  # formatted already for the other handler
            return cached
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="microseconds")
        line: dict[str, Any] = {"time": stamp.replace("+00:00", "Z")}
        line.update(_payload(record, super().format(record)))
        line["severity"] = record.levelname
        labels = getattr(record, "labels", None)
        line[LABELS] = {
            **({"python_logger": record.name} if record.name else {}),
            **(labels if isinstance(labels, Mapping) else {}),
        }
        trace = getattr(record, "trace", None)
        if trace:
            line[TRACE] = trace
            line[SPAN_ID] = getattr(record, "span_id", None) or ""
            line[TRACE_SAMPLED] = bool(getattr(record, "trace_sampled", False))
        line[SOURCE_LOCATION] = getattr(record, "source_location", None) or {
            "line": record.lineno,
            "file": record.pathname,
            "function": record.funcName,
        }
        http_request = getattr(record, "http_request", None)
        if http_request:
            line["httpRequest"] = http_request
        text = _encode(line)
        record._offload_line = text  # stdout and the file write the same line: format once
        return text


class SharedRotatingFileHandler(logging.Handler):
    """Append-only JSON lines file, bounded in size, shared by several processes.

    Each line is one ``write`` on an ``O_APPEND`` descriptor, so lines of gunicorn
    workers never interleave. The process that sees the file past ``max_bytes`` rotates
    it under an ``flock``; the others notice the new inode at their next line and reopen.
    """

    def __init__(self, filename: str, max_bytes: int, backup_count: int) -> None:
        super().__init__()
        self.baseFilename = os.path.abspath(filename)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._fd = -1
        self._ino = -1
        self._open()

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._ino = os.fstat(self._fd).st_ino

    def _reopen_if_moved(self) -> None:
        try:
            moved = os.stat(self.baseFilename).st_ino != self._ino
        except FileNotFoundError:
            moved = True
        if moved:
            self._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            self._reopen_if_moved()
            os.write(self._fd, data)
            if self.max_bytes > 0 and os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    def _rotate(self) -> None:
        with open(self.baseFilename + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if os.stat(self.baseFilename).st_size < self.max_bytes:
                    return  # another process rotated it already
            except FileNotFoundError:
                return
            for i in range(self.backup_count - 1, 0, -1):
                src = f"{self.baseFilename}.{i}"
                if os.path.exists(src):
                    os.replace(src, f"{self.baseFilename}.{i + 1}")
            if self.backup_count > 0:
                os.replace(self.baseFilename, f"{self.baseFilename}.1")
            else:
                os.truncate(self.baseFilename, 0)
        self._reopen_if_moved()

    def close(self) -> None:
        """Close the file."""
        with contextlib.suppress(OSError):
            if self._fd >= 0:
                os.close(self._fd)
        self._fd = -1
        super().close()


_configured: str | None = None
_installed: list[logging.Handler] = []


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    project_id: str = "local",
    log_dir: str | None = None,
    max_file_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 3,
    stream: IO[str] | None = None,
) -> None:
    """Send every log line of this process to stdout (and ``log_dir``) as Cloud Logging JSON.

    Idempotent: a second call in the same process changes nothing, so lines never double.
    """
    global _configured
    if _configured is not None:
        return
    _configured = service
    context_filter = _ContextFilter(service, project_id)
    formatter = CloudLineFormatter()
    line_handler = logging.StreamHandler(stream or sys.stdout)
    line_handler.setFormatter(formatter)
    handlers: list[logging.Handler] = [line_handler]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        file_handler = SharedRotatingFileHandler(
            os.path.join(log_dir, f"{service}.log"), max_file_bytes, backup_count
        )
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.addFilter(context_filter)
        root.addHandler(handler)
    _installed[:] = handlers
    root.setLevel(level.upper())
    # Quiet chatty libraries; their warnings still come through.
    for name in ("urllib3", "google.auth", "grpc", "gunicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # gunicorn's own error log: send through the root handlers, no second copy.
    gunicorn_error = logging.getLogger("gunicorn.error")
    gunicorn_error.handlers = []
    gunicorn_error.propagate = True


def configure_logging_from(service: str, settings: Settings) -> None:
    """:func:`configure_logging` with the ``LOG_*`` and ``PROJECT_ID`` settings of ``config``."""
    configure_logging(
        service,
        level=settings.log_level,
        project_id=settings.project_id,
        log_dir=settings.log_dir or None,
        max_file_bytes=settings.log_file_max_bytes,
        backup_count=settings.log_file_backups,
    )


def reset_logging_for_tests() -> None:
    """Forget the process's logging set-up and close its handlers (tests only)."""
    global _configured
    _configured = None
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()


def parse_line(line: str) -> dict[str, Any] | None:
    """One JSON log line as a dict, or None when the line is not ours."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
