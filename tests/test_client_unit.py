"""offload.client against scripted answers (httpx.MockTransport): fallbacks, resumption, retries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from offload.client import Client, Job, ServerError, ServiceUnavailableError

JOB = "01m8stwwj6vpky1w1g6ery14n3"


def resource(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": JOB, "type": "demo.sleep", "status": status, "payload": {}} | extra


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    return Client("http://offload.test", transport=httpx.MockTransport(handler), backoff_seconds=0)


def sse(*frames: str) -> bytes:
    return "".join(frames).encode()


def frame(event_id: int, kind: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"


def test_a_cut_stream_is_resumed_with_last_event_id_and_nothing_is_reported_twice() -> None:
    seen_headers: list[str | None] = []

    def cut_after_progress() -> Iterator[bytes]:
        yield sse(frame(1, "status", {"status": "running", "attempts": 1}), ": keep-alive\n\n")
        yield sse(frame(2, "progress", {"fraction": 0.5, "message": "half"}))
        raise httpx.RemoteProtocolError("peer closed connection")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            seen_headers.append(request.headers.get("Last-Event-ID"))
            headers = {"content-type": "text/event-stream"}
            if len(seen_headers) == 1:
                return httpx.Response(200, headers=headers, stream=_Stream(cut_after_progress()))
            done = resource("succeeded", result={"ok": 1}, progress={"fraction": 1.0})
            return httpx.Response(200, headers=headers, content=sse(frame(3, "finished", done)))
        return httpx.Response(200, json=resource("queued"))

    reports: list[Job] = []
    job = client_for(handler).wait(JOB, timeout=10, on_progress=reports.append)
    assert job.status == "succeeded" and job.result == {"ok": 1}
    assert seen_headers == [None, "2"]
    assert [(j.status, j.progress.fraction if j.progress else None) for j in reports] == [
        ("running", None),
        ("running", 0.5),
        ("succeeded", 1.0),
    ]


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_without_an_event_stream_wait_long_polls() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"type": "about:blank", "status": 404})
        asked.append(str(request.url.params.get("wait")))
        if len(asked) < 2:
            return httpx.Response(200, json=resource("running"))
        return httpx.Response(200, json=resource("succeeded"))

    job = client_for(handler).wait(JOB, timeout=120)
    assert job.status == "succeeded"
    assert asked == ["None", "60"]  # the first look, then a long-poll of the longest wait


def test_a_service_that_does_not_hold_long_polls_is_polled_at_its_retry_after_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("offload.client.waiting.time.sleep", slept.append)
    polls = iter(["running", "running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(404)
        status = next(polls) if "wait" in request.url.params else "queued"
        return httpx.Response(200, json=resource(status), headers={"Retry-After": "2"})

    assert client_for(handler).wait(JOB, timeout=600).status == "succeeded"
    assert slept == [2.0, 2.0]


def test_a_503_is_retried_and_a_submit_retry_keeps_its_idempotency_key() -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            raise httpx.ReadError("connection reset")
        if len(keys) == 2:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"status": 503})
        return httpx.Response(202, json=resource("queued"))

    assert client_for(handler).submit("demo.sleep", {"seconds": 1}).id == JOB
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0].startswith("offload-client-")


def test_503s_past_the_retries_and_non_json_errors_are_typed() -> None:
    unavailable = client_for(lambda r: httpx.Response(503, json={"detail": "busy", "status": 503}))
    with pytest.raises(ServiceUnavailableError) as busy:
        unavailable.get(JOB)
    assert busy.value.detail == "busy"
    html = client_for(lambda r: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ServerError) as bad:
        html.get(JOB)
    assert bad.value.status == 502 and "Bad gateway" in bad.value.detail


def test_unknown_fields_are_kept_in_raw_and_missing_ones_default() -> None:
    job = Job.from_dict({"id": JOB, "type": "t", "status": "running", "brand_new": [1]})
    assert job.raw["brand_new"] == [1] and job.progress is None and job.attempt_log == ()
    assert not job.finished


def test_submit_sends_every_option_and_a_notify_url_as_an_object() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json=resource("queued"))

    client_for(handler).submit(
        "demo.sleep",
        {"seconds": 1},
        delay_seconds=5,
        deadline_seconds=2,
        idempotency_key="mine",
        notify="https://hooks.example.com/x",
    )
    assert json.loads(sent[0].content) == {
        "type": "demo.sleep",
        "payload": {"seconds": 1},
        "delay_seconds": 5,
        "deadline_seconds": 2,
        "notify": {"url": "https://hooks.example.com/x"},
    }
    assert sent[0].headers["Idempotency-Key"] == "mine"


@pytest.mark.parametrize("stream_answer", ["503", "empty", "retry only"])
def test_streams_that_are_refused_or_end_at_once_hand_over_to_long_polls(
    stream_answer: str,
) -> None:
    streams, polls = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            streams.append(request)
            if stream_answer == "503":
                return httpx.Response(503, json={"status": 503}, headers={"Retry-After": "0"})
            body = b"retry: 1000\n\n" if stream_answer == "retry only" else b""
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        if "wait" in request.url.params:
            polls.append(request)
            return httpx.Response(200, json=resource("succeeded"))
        return httpx.Response(200, json=resource("running"))

    client = client_for(handler)
    assert client.wait(JOB, timeout=30).status == "succeeded"
    assert len(streams) == (1 if stream_answer == "503" else client.retries + 1)
    assert len(polls) == 1
