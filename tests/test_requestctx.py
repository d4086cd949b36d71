"""Request ids and traces: picked safely, echoed on every answer, on every log line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, jsonify
from flask.testing import FlaskClient

from offload import problems, requestctx
from offload.logs import LABELS, SPAN_ID, TRACE, configure_logging, reset_logging_for_tests
from offload.problems import ProblemError
from offload.requestctx import parse_trace, pick_request_id

NEW_ID = re.compile(r"[0-9a-f]{32}")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HOSTILE = [
    "abc\nInjected: yes",
    "abc\n",
    'abc"},{"severity":"CRITICAL',
    "x" * 10_000,
    "",
    " leading-space",
    "tab\there",
    "émoji-☃",
    "a/b",
]


@pytest.mark.parametrize("value", ["client-req-1", "A", "r.1:2_3-4", "x" * 128])
def test_a_valid_request_id_is_kept(value: str) -> None:
    assert pick_request_id({"X-Request-ID": value}) == value


@pytest.mark.parametrize("value", [*HOSTILE, "x" * 129, "-starts-with-dash"])
def test_an_invalid_request_id_is_replaced_by_a_new_one(value: str) -> None:
    assert NEW_ID.fullmatch(pick_request_id({"X-Request-ID": value}))


def test_app_engine_log_id_is_the_fallback_on_app_engine_and_a_valid_header_wins() -> None:
    ae = {"on_app_engine": True}
    assert pick_request_id({"X-Appengine-Request-Log-Id": "5f1e2d"}, **ae) == "5f1e2d"
    both = {"X-Request-ID": "mine", "X-Appengine-Request-Log-Id": "5f1e2d"}
    assert pick_request_id(both, **ae) == "mine"
    bad_then_ae = {"X-Request-ID": "bad\n", "X-Appengine-Request-Log-Id": "5f1e2d"}
    assert pick_request_id(bad_then_ae, **ae) == "5f1e2d"


def test_app_engine_log_id_is_ignored_off_app_engine() -> None:
    """Nothing strips the header elsewhere: a forged one must not choose the request id."""
    assert NEW_ID.fullmatch(pick_request_id({"X-Appengine-Request-Log-Id": "forged-id"}))


def test_traceparent_is_followed() -> None:
    trace = parse_trace({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    assert (trace.trace_id, trace.span_id, trace.sampled) == (TRACE_ID, "00f067aa0ba902b7", True)
    assert trace.traceparent() == f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_cloud_trace_context_is_the_fallback_with_its_decimal_span_in_hex() -> None:
    trace = parse_trace({"X-Cloud-Trace-Context": f"{TRACE_ID.upper()}/1;o=1"})
    assert (trace.trace_id, trace.span_id, trace.sampled) == (TRACE_ID, "0000000000000001", True)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},  # all-zero trace id is invalid
        {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},
        {"traceparent": f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01"},
        {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01\nx"},
        {"X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1\nInjected: 1"},
        {"X-Cloud-Trace-Context": "not-a-trace"},
    ],
)
def test_a_missing_or_malformed_trace_starts_a_new_one(headers: dict[str, str]) -> None:
    trace = parse_trace(headers)
    assert re.fullmatch(r"[0-9a-f]{32}", trace.trace_id) and trace.trace_id != TRACE_ID
    assert re.fullmatch(r"[0-9a-f]{16}", trace.span_id)


# -- in a Flask app --------------------------------------------------------------


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    reset_logging_for_tests()
    stream = io.StringIO()
    configure_logging("web", project_id="proj", stream=stream)
    yield stream
    reset_logging_for_tests()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in stream.getvalue().splitlines()]


@pytest.fixture
def app_client(log_stream: io.StringIO) -> FlaskClient:
    app = Flask(__name__)
    requestctx.init_app(app)
    problems.init_app(app)
    log = logging.getLogger("app")

    @app.get("/ok")
    def ok() -> Response:
        log.info("handling ok")
        return jsonify({"request_id": requestctx.current_request_id()})

    @app.get("/problem")
    def problem() -> Response:
        raise ProblemError(409, "Conflict", "no", slug="conflict")

    @app.get("/crash")
    def crash() -> Response:
        raise RuntimeError("secret internals")

    return app.test_client()


@pytest.mark.parametrize("path", ["/ok", "/problem", "/crash", "/missing"])
def test_every_answer_echoes_the_request_id_and_problems_carry_it(
    app_client: FlaskClient, path: str
) -> None:
    r = app_client.get(path, headers={"X-Request-ID": "rid-42"})
    assert r.headers["X-Request-ID"] == "rid-42"
    assert r.get_json(force=True)["request_id"] == "rid-42"


@pytest.mark.parametrize("value", HOSTILE[2:])  # Werkzeug's client refuses newlines itself
def test_a_hostile_request_id_is_replaced_and_never_logged(
    app_client: FlaskClient, log_stream: io.StringIO, value: str
) -> None:
    r = app_client.get("/ok", headers={"X-Request-ID": value})
    rid = r.headers["X-Request-ID"]
    assert NEW_ID.fullmatch(rid) and r.get_json()["request_id"] == rid
    logged = lines(log_stream)
    assert {e[LABELS]["request_id"] for e in logged} == {rid}
    if value:
        assert value not in log_stream.getvalue()
        assert json.dumps(value)[1:-1] not in log_stream.getvalue()
        assert any(e["message"].startswith("ignored an invalid X-Request-ID") for e in logged)


def test_lines_of_a_request_carry_its_trace_and_one_access_line_describes_it(
    app_client: FlaskClient, log_stream: io.StringIO
) -> None:
    app_client.get(
        "/ok?x=1",
        headers={
            "X-Request-ID": "rid-7",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
            "User-Agent": "probe/1.0",
        },
    )
    handled, access = lines(log_stream)
    assert handled["message"] == "handling ok" and "httpRequest" not in handled
    for line in (handled, access):
        assert line[LABELS]["request_id"] == "rid-7"
        assert line[TRACE] == f"projects/proj/traces/{TRACE_ID}"
        assert line[SPAN_ID] == "00f067aa0ba902b7"
    assert access["message"] == "GET /ok 200" and access["severity"] == "INFO"
    http = access["httpRequest"]
    assert http["requestMethod"] == "GET" and http["requestUrl"].endswith("/ok?x=1")
    assert http["status"] == 200 and http["userAgent"] == "probe/1.0"
    assert re.fullmatch(r"[0-9.]+s", http["latency"])
    assert int(http["responseSize"]) > 0 and http["requestSize"] == "0"


def test_an_unexpected_error_is_logged_with_its_trace_back_but_never_answered(
    app_client: FlaskClient, log_stream: io.StringIO
) -> None:
    r = app_client.get("/crash", headers={"X-Request-ID": "rid-9"})
    assert r.status_code == 500 and r.mimetype == "application/problem+json"
    assert "secret internals" not in r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True)
    error, access = lines(log_stream)
    assert error["severity"] == "ERROR" and error[LABELS]["request_id"] == "rid-9"
    assert "Traceback (most recent call last)" in error["message"]
    assert "RuntimeError: secret internals" in error["message"]
    assert access["httpRequest"]["status"] == 500 and access["severity"] == "WARNING"


def test_expected_failures_are_not_logged_as_errors(
    app_client: FlaskClient, log_stream: io.StringIO
) -> None:
    app_client.get("/problem")
    app_client.get("/missing")
    assert {e["severity"] for e in lines(log_stream)} == {"INFO"}
