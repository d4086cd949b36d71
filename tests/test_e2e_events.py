"""Long-poll, the event stream and webhooks over real HTTP, against the real processes."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import postgres_schema_url
from tests.processes import Stack, make_stack
from tests.webhook_receiver import webhook_receiver

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def events_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Emulator, worker and web with webhooks on (fast queue retries), on each store."""
    tmp = tmp_path_factory.mktemp("events")
    databases = (
        iter([f"sqlite:///{tmp / 'offload.db'}"])
        if request.param == "sqlite"
        else postgres_schema_url()
    )
    s = make_stack(
        tmp,
        env={
            "OFFLOAD_DATABASE_URL": next(databases),
            "OFFLOAD_WEBHOOK_SECRET": SECRET,
            "OFFLOAD_EVENTS_KEEPALIVE_SECONDS": "0.5",
        },
    )
    try:
        yield s
    finally:
        s.stop()
        next(databases, None)  # drops the PostgreSQL schema


@pytest.fixture
def web(events_stack: Stack, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=events_stack.web_url, timeout=30) as client:
        yield client
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(events_stack.outputs())


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")


def submit(web: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = web.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    return job


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_long_poll_answers_within_half_a_second_of_the_finish(web: httpx.Client) -> None:
    lags = []
    for _ in range(3):
        job = submit(web, {"type": "demo.sleep", "payload": {"seconds": 1}})
        started = time.monotonic()
        r = web.get(f"/jobs/{job['id']}", params={"wait": 20})
        answered = time.time()
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "succeeded", body
        assert time.monotonic() - started < 15  # answered at the finish, not after 20 s
        lags.append(answered - parse_time(body["finished_at"]))
    assert max(lags) < 0.5, lags


def test_long_poll_answers_the_current_state_when_the_wait_runs_out(web: httpx.Client) -> None:
    job = submit(web, {"type": "demo.echo", "payload": {}, "delay_seconds": 60})
    started = time.monotonic()
    r = web.get(f"/jobs/{job['id']}", params={"wait": 0.5})
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert time.monotonic() - started >= 0.5
    assert web.delete(f"/jobs/{job['id']}").status_code == 204


@pytest.mark.parametrize("wait", ["61", "-1", "soon", "nan", "inf"])
def test_bad_wait_values_are_422_problems(web: httpx.Client, wait: str) -> None:
    job = submit(web, {"type": "demo.echo", "payload": {}, "delay_seconds": 60})
    r = web.get(f"/jobs/{job['id']}", params={"wait": wait})
    assert r.status_code == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"] == ["query", "wait"]


def read_events(
    web: httpx.Client, job_id: str, *, last_event_id: str | None = None, stop_after: int = 0
) -> tuple[list[tuple[int, str, Any]], list[str]]:
    """(id, event, data) of each event, and the comments; stops early after N events."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[tuple[int, str, Any]] = []
    comments: list[str] = []
    with web.stream("GET", f"/jobs/{job_id}/events", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line == "":
                if "id" in fields:
                    events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
                    if stop_after and len(events) >= stop_after:
                        break  # the client cuts the connection here
                fields = {}
            else:
                name, _, value = line.partition(": ")
                fields[name] = value
    return events, comments


def test_an_event_stream_cut_and_resumed_with_last_event_id_loses_and_repeats_nothing(
    web: httpx.Client,
) -> None:
    job = submit(web, {"type": "demo.sleep", "payload": {"seconds": 2}})
    first, _ = read_events(web, job["id"], stop_after=4)
    assert len(first) == 4
    rest, _ = read_events(web, job["id"], last_event_id=str(first[-1][0]))
    whole, _ = read_events(web, job["id"])  # the job has finished: the full log at once
    seen = first + rest
    assert [e[0] for e in seen] == [e[0] for e in whole]
    assert len({e[0] for e in seen}) == len(seen)
    kinds = [e[1] for e in whole]
    assert kinds[0] == "status" and "attempt" in kinds and "progress" in kinds
    assert kinds[-1] == "finished" and kinds.count("finished") == 1
    final = whole[-1][2]
    assert final["id"] == job["id"] and final["status"] == "succeeded"
    assert final["result"] == {"slept_seconds": 2.0}


def test_an_idle_event_stream_sends_keep_alive_comments(web: httpx.Client) -> None:
    job = submit(web, {"type": "demo.echo", "payload": {}, "delay_seconds": 60})
    lines = []
    with web.stream("GET", f"/jobs/{job['id']}/events") as r:
        for line in r.iter_lines():
            lines.append(line)
            if line.startswith(":"):
                break  # keep-alive every 0.5 s in this stack
    assert lines[0] == "retry: 1000"
    assert "event: status" in lines and lines[-1] == ": keep-alive"
    assert web.delete(f"/jobs/{job['id']}").status_code == 204


def test_a_bad_last_event_id_is_a_422_and_an_unknown_job_a_404(web: httpx.Client) -> None:
    job = submit(web, {"type": "demo.echo", "payload": {}})
    r = web.get(f"/jobs/{job['id']}/events", headers={"Last-Event-ID": "x1"})
    assert r.status_code == 422 and r.headers["Content-Type"] == "application/problem+json"
    r = web.get("/jobs/01m803abqkd0cwdp1nkkwkms9n/events")
    assert r.status_code == 404


def verified(delivery_body: bytes, headers: dict[str, str]) -> Any:
    """The payload, verified by the Standard Webhooks reference library."""
    return Webhook(SECRET).verify(delivery_body, headers)


def test_each_finished_job_gets_one_correctly_signed_webhook(web: httpx.Client) -> None:
    with webhook_receiver() as receiver:
        jobs = {
            "succeeded": submit(
                web,
                {"type": "demo.echo", "payload": {"a": 1}, "notify": {"url": receiver.url + "/ok"}},
            ),
            "failed": submit(
                web,
                {"type": "demo.fail", "payload": {}, "notify": {"url": receiver.url + "/fail"}},
            ),
            "cancelled": submit(
                web,
                {
                    "type": "demo.echo",
                    "payload": {},
                    "delay_seconds": 60,
                    "notify": {"url": receiver.url + "/cancel"},
                },
            ),
        }
        assert web.delete(f"/jobs/{jobs['cancelled']['id']}").status_code == 204
        for outcome, path in (("succeeded", "/ok"), ("failed", "/fail"), ("cancelled", "/cancel")):
            job_id = jobs[outcome]["id"]

            def delivered(job_id: str = job_id) -> Any:
                notify = web.get(f"/jobs/{job_id}").json()["notify"]
                return notify["deliveries"] and notify["deliveries"][0]["state"] == "delivered"

            wait_for(delivered)
            got = receiver.for_path(path)
            assert len(got) == 1, got
            message = verified(got[0].body, got[0].headers)
            assert message["type"] == f"job.{outcome}"
            assert message["data"]["id"] == job_id and message["data"]["status"] == outcome
            assert got[0].headers["webhook-id"] == f"msg_{job_id}"
            job = web.get(f"/jobs/{job_id}").json()
            assert job["notify"]["url"] == receiver.url + path
            assert job["notify"]["deliveries"][0]["attempts"] == 1
            assert job["notify"]["deliveries"][0]["last_status"] == 204
        # A tampered body fails the same verification.
        with pytest.raises(Exception, match="(?i)signature"):
            verified(got[0].body + b" ", got[0].headers)


def test_a_receiver_answering_500_twice_gets_the_webhook_on_the_third_try(
    web: httpx.Client,
) -> None:
    with webhook_receiver() as receiver:
        receiver.fail_first["/flaky"] = 2
        job = submit(
            web, {"type": "demo.echo", "payload": {}, "notify": {"url": receiver.url + "/flaky"}}
        )

        def delivered() -> Any:
            deliveries = web.get(f"/jobs/{job['id']}").json()["notify"]["deliveries"]
            return deliveries and deliveries[0]["state"] == "delivered" and deliveries[0]

        delivery = wait_for(delivered)
        got = receiver.for_path("/flaky")
        assert [r.status for r in got] == [500, 500, 204]
        assert len({r.headers["webhook-id"] for r in got}) == 1
        for r in got:
            assert verified(r.body, r.headers)["data"]["id"] == job["id"]
        assert delivery["attempts"] == 3 and delivery["last_status"] == 204


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "https://user:pw@example.com/x", "not a url", "https://"],
)
def test_bad_notify_urls_are_422_problems(web: httpx.Client, url: str) -> None:
    r = web.post("/jobs", json={"type": "demo.echo", "notify": {"url": url}})
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"][:2] == ["body", "notify"]


# -- hosted ------------------------------------------------------------------------

API_KEY = "k_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def hosted_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """web as on Cloud Run (K_SERVICE set): API keys, webhooks to public https only."""
    import hashlib

    tmp: Path = tmp_path_factory.mktemp("hosted")
    stack = Stack(
        tmp=tmp,
        env={
            "K_SERVICE": "offload-web-test",
            "OFFLOAD_PROJECT_ID": "offload-test",
            "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp / 'offload.db'}",
            "OFFLOAD_LOG_DIR": str(tmp / "log"),
            "OFFLOAD_API_AUTH": "api_key",
            "OFFLOAD_API_KEYS": "tests:" + hashlib.sha256(API_KEY.encode()).hexdigest(),
            "OFFLOAD_WEBHOOK_SECRET": SECRET,
            "OFFLOAD_CONSOLE_SECRET_KEY": "hosted-console-session-key-" + "0" * 32,
            "OFFLOAD_JOB_MODULES": "jobs",
        },
    )
    try:
        stack.start_emulator()
        stack.start_service("web", processes=1)
        yield stack.web_url
    finally:
        stack.stop()


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",  # a name that resolves to 127.0.0.1
        "https://169.254.169.254/computeMetadata/v1/",
        "https://[::1]/hook",
        "https://10.0.0.8/hook",
        "http://example.com/hook",  # not https
    ],
)
def test_hosted_web_refuses_notify_urls_that_reach_inside(hosted_web: str, url: str) -> None:
    r = httpx.post(
        hosted_web + "/jobs",
        json={"type": "demo.echo", "notify": {"url": url}},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"] == ["body", "notify", "url"]
