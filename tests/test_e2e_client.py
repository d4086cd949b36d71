"""offload.client over real HTTP against the real web, worker and emulator."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from offload.client import (
    Client,
    ConflictError,
    InvalidRequestError,
    Job,
    NotFoundError,
    ServiceUnreachableError,
    WaitTimeoutError,
)
from tests.conftest import ROOT, Stack, free_port
from tests.dropproxy import DropFirstAnswers

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(dump_stack_on_failure: Stack) -> Iterator[Client]:
    with Client(dump_stack_on_failure.web_url, timeout=10) as c:
        yield c


def test_importing_the_client_and_its_commands_pulls_in_neither_flask_nor_google() -> None:
    code = (
        "import sys, offload.client, offload.clientcli, offload.progressview\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'google', "
        "'werkzeug', 'web', 'worker', 'grpc'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_submit_then_wait_reports_progress_and_returns_the_finished_job(client: Client) -> None:
    job = client.submit("demo.sleep", {"seconds": 1.5})
    assert isinstance(job, Job) and job.status == "queued" and job.type == "demo.sleep"
    seen: list[Job] = []
    done = client.wait(job.id, timeout=60, on_progress=seen.append)
    assert done.status == "succeeded" and done.result == {"slept_seconds": 1.5}
    assert done.finished and done.finished_at is not None and done.attempts == 1
    assert seen[-1].status == "succeeded"
    assert any(j.status == "running" and j.progress is not None for j in seen), seen
    assert client.get(job.id).raw == done.raw | {"updated_at": client.get(job.id).raw["updated_at"]}


def test_wait_times_out_with_the_last_state_and_the_job_keeps_its_place(client: Client) -> None:
    job = client.submit("demo.echo", {"late": True}, delay_seconds=60)
    with pytest.raises(WaitTimeoutError) as caught:
        client.wait(job.id, timeout=1.0)
    assert caught.value.job is not None and caught.value.job.status == "queued"
    cancelled = client.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.reason == "cancelled_by_client"
    assert client.wait(job.id, timeout=5).status == "cancelled"


def test_cancel_of_a_running_job_asks_it_to_stop(client: Client) -> None:
    job = client.submit("demo.sleep", {"seconds": 20})
    running = threading.Event()

    def on_progress(j: Job) -> None:
        if j.status == "running":
            running.set()

    ended: list[Job] = []
    waiter = threading.Thread(
        target=lambda: ended.append(client.wait(job.id, 60, on_progress)), daemon=True
    )
    waiter.start()
    assert running.wait(30)
    asked = client.cancel(job.id)
    assert asked.cancel_requested and asked.status == "running"
    waiter.join(30)
    assert [j.status for j in ended] == ["cancelled"]  # the waiter saw it end


def test_list_follows_next_cursor_over_every_page(client: Client) -> None:
    marker = secrets.token_hex(4)
    ids = {client.submit("demo.echo", {"marker": marker, "i": i}).id for i in range(5)}
    listed = [
        j for j in client.list(type="demo.echo", page_size=2) if j.payload.get("marker") == marker
    ]
    assert {j.id for j in listed} == ids
    assert [j.id for j in listed] == sorted(ids, reverse=True)  # newest first, no repeats


def test_resubmit_makes_a_new_job_from_a_failed_one(client: Client) -> None:
    failed = client.wait(client.submit("demo.fail", {"message": "no"}).id, timeout=30)
    assert failed.status == "failed" and failed.error is not None and failed.error.message == "no"
    again = client.resubmit(failed.id)
    assert again.id != failed.id and again.resubmit_of == failed.id
    with pytest.raises(ConflictError) as caught:
        client.resubmit(client.submit("demo.echo", {}).id)  # queued: not resubmittable
    assert caught.value.status == 409 and caught.value.request_id


def test_errors_are_typed_problems_with_status_type_detail_errors_and_request_id(
    client: Client,
) -> None:
    with pytest.raises(InvalidRequestError) as invalid:
        client.submit("no.such.type", {})
    e = invalid.value
    assert e.status == 422 and e.type.endswith("/validation-error") and "no.such.type" in e.detail
    assert e.errors and e.errors[0]["loc"] == ["body", "type"] and len(e.request_id or "") == 32
    with pytest.raises(InvalidRequestError) as no_webhooks:  # this stack has no secret
        client.submit("demo.echo", {}, notify={"url": "http://127.0.0.1:9/hook"})
    assert no_webhooks.value.errors[0]["loc"] == ["body", "notify", "url"]
    with pytest.raises(NotFoundError) as missing:
        client.get("0" * 26)
    assert missing.value.status == 404 and missing.value.type.endswith("/not-found")
    with pytest.raises(NotFoundError):
        client.wait("0" * 26, timeout=5)
    finished = client.wait(client.submit("demo.echo", {}).id, timeout=30)
    with pytest.raises(ConflictError) as conflict:
        client.cancel(finished.id)
    assert "already ended succeeded" in conflict.value.detail


def test_an_unreachable_service_is_a_typed_error_after_bounded_retries() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff_seconds=0.01) as client:
        with pytest.raises(ServiceUnreachableError, match="no answer from"):
            client.get("0" * 26)


def test_a_submit_whose_answer_was_lost_is_retried_and_makes_one_job(stack: Stack) -> None:
    port = int(stack.web_url.rsplit(":", 1)[1])
    proxy = DropFirstAnswers(port, drops=1).start()
    marker = secrets.token_hex(6)
    try:
        with Client(proxy.url, backoff_seconds=0.05) as client:
            job = client.submit("demo.echo", {"marker": marker})
    finally:
        proxy.stop()
    assert proxy.dropped == 1
    with Client(stack.web_url) as direct:
        same = [j for j in direct.list(type="demo.echo") if j.payload.get("marker") == marker]
    assert [j.id for j in same] == [job.id]


def test_the_same_lost_answer_without_an_idempotency_key_would_make_two_jobs(stack: Stack) -> None:
    # The control for the test above: the proxy really does make the client send twice.
    port = int(stack.web_url.rsplit(":", 1)[1])
    proxy = DropFirstAnswers(port, drops=1).start()
    marker = secrets.token_hex(6)
    body = {"type": "demo.echo", "payload": {"marker": marker}}
    transport = httpx.HTTPTransport(retries=0)
    try:
        with httpx.Client(base_url=proxy.url, transport=transport) as http:
            for _ in range(2):
                try:
                    http.post("/jobs", json=body)
                except httpx.TransportError:
                    pass
    finally:
        proxy.stop()
    with Client(stack.web_url) as direct:
        same = [j for j in direct.list(type="demo.echo") if j.payload.get("marker") == marker]
    assert len(same) == 2


def test_wait_follows_the_live_event_stream_not_polls(stack: Stack, client: Client) -> None:
    job = client.submit("demo.sleep", {"seconds": 2})
    reports: list[tuple[float, Job]] = []
    done = client.wait(job.id, 60, lambda j: reports.append((time.monotonic(), j)))
    assert done.status == "succeeded"
    finished_at = reports[-1][0]
    halfway = [t for t, j in reports if j.progress and 0 < j.progress.fraction < 1]
    # Progress arrived while the job ran (a buffered stream would deliver it all at the end).
    assert halfway and finished_at - halfway[0] > 0.5, reports
    access = [
        json.loads(line)["message"]
        for line in (stack.log_dir / "web.log").read_text().splitlines()
        if f"/jobs/{job.id}" in line and "httpRequest" in line
    ]
    assert access.count(f"GET /jobs/{job.id}/events 200") == 1, access
    assert access.count(f"GET /jobs/{job.id} 200") == 1, access  # the first look, no polls
