"""Our log line has exactly the fields, values and order google-cloud-logging's handler gives."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import google.cloud.logging_v2
import pytest
from google.cloud.logging_v2.handlers import StructuredLogHandler

from offload.logs import (
    SPAN_ID,
    TRACE,
    TRACE_SAMPLED,
    CloudLineFormatter,
    _ContextFilter,
    log_context,
)


def _reference(record: logging.LogRecord, handler: StructuredLogHandler) -> dict[str, Any]:
    """The line as the library formats it, less the fields we leave out when empty."""
    for flt in handler.filters:
        flt.filter(record)
    line: dict[str, Any] = json.loads(handler.format(record))  # type: ignore[no-untyped-call]
    if not line.get(TRACE):
        for key in (TRACE, SPAN_ID, TRACE_SAMPLED):
            line.pop(key, None)
    if not line.get("httpRequest"):
        line.pop("httpRequest", None)
    return line


@pytest.fixture
def both() -> Iterator[list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Every record logged on logger ``shape`` as (library's line, our line) pairs."""
    google.cloud.logging_v2._instrumentation_emitted = True
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    ours = CloudLineFormatter()
    library = StructuredLogHandler(project_id="proj", stream=io.StringIO())  # type: ignore[no-untyped-call]
    context = _ContextFilter("web", "proj")

    class Pair(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            context.filter(record)
            mine = json.loads(ours.format(record))
            assert mine.pop("time").endswith("Z")
            pairs.append((_reference(logging.makeLogRecord(record.__dict__), library), mine))

    logger = logging.getLogger("shape")
    handler = Pair()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield pairs
    logger.removeHandler(handler)


def _raise() -> None:
    raise ValueError("boom\nsecond line")


CASES: list[Callable[[logging.Logger], None]] = [
    lambda lg: lg.info("job %s accepted", "j1"),
    lambda lg: lg.warning('not ascii é \u2028 \x01 "quoted"'),
    lambda lg: lg.info({"a": 1, "severity": "dropped", "b": [1, 2]}),
    lambda lg: lg.info('{"x": 1, "time": "dropped"}'),
    lambda lg: lg.info("{not json"),
    lambda lg: lg.info("with fields", extra={"json_fields": {"k": "v"}}),
    lambda lg: lg.info("None"),
    lambda lg: lg.info(""),
    lambda lg: lg.info("located", extra={"source_location": {"file": "f.py"}}),
    lambda lg: lg.info("stack", stack_info=True),
    lambda lg: lg.info("extra labels", extra={"labels": {"k": 1}}),
    lambda lg: lg.log(
        logging.WARNING,
        "%s %s %s",
        "POST",
        "/jobs",
        500,
        extra={"http_request": {"requestMethod": "POST", "status": 500, "latency": "0.1s"}},
    ),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("traced", [False, True])
def test_our_line_equals_the_librarys(
    both: list[tuple[dict[str, Any], dict[str, Any]]], case: int, traced: bool
) -> None:
    logger = logging.getLogger("shape")
    with log_context(
        trace="a" * 32 if traced else None,
        span_id="b" * 16 if traced else None,
        trace_sampled=traced,
        request_id="r-1",
        job_id="j-1",
        attempt=2,
    ):
        CASES[case](logger)
    ((library, ours),) = both
    assert list(ours.items()) == list(library.items())


def test_an_exception_line_equals_the_librarys(
    both: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    try:
        _raise()
    except ValueError:
        logging.getLogger("shape").exception("failed")
    ((library, ours),) = both
    assert list(ours.items()) == list(library.items())
    assert "ValueError: boom" in ours["message"]
