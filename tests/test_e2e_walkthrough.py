"""The README walkthrough, over real HTTP: emulator + gunicorn web + gunicorn worker."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def submit(stack: Stack, body: dict[str, Any], **headers: str) -> requests.Response:
    return requests.post(f"{stack.web_url}/jobs", json=body, headers=headers, timeout=10)


def wait_for(stack: Stack, job_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    """Poll the status monitor until the job reaches one of ``statuses``."""
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        job: dict[str, Any] = requests.get(f"{stack.web_url}/jobs/{job_id}", timeout=5).json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in statuses:
            job["_seen"] = seen
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}; saw {seen}\n{stack.outputs()}")


def raw_http(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh socket and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_submitted_job_answers_202_at_once_then_runs_to_succeeded(stack: Stack) -> None:
    started = time.monotonic()
    r = submit(stack, {"type": "demo.sleep", "payload": {"seconds": 1}})
    assert time.monotonic() - started < 5  # at once: far less than the job's duration... and
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["Location"] == f"/jobs/{body['id']}"
    assert r.headers["X-Request-ID"] == body["request_id"]
    assert int(r.headers["Retry-After"]) >= 1
    assert body["status"] == "queued" and body["type"] == "demo.sleep"
    assert body["created_at"].endswith("Z")

    job = wait_for(stack, body["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    assert "running" in job["_seen"]
    assert job["result"] == {"slept_seconds": 1.0}
    assert job["attempts"] == 1
    assert job["started_at"] and job["finished_at"]
    assert [a["outcome"] for a in job["attempt_log"]] == ["succeeded"]


def test_delayed_job_can_be_cancelled_and_its_task_is_deleted(stack: Stack) -> None:
    r = submit(stack, {"type": "demo.echo", "payload": {"a": 1}, "delay_seconds": 60})
    assert r.status_code == 202
    job_id = r.json()["id"]
    task_name = None
    client = stack.tasks_client()
    for task in client.list_tasks(
        parent=client.queue_path("offload-test", "us-central1", "offload-jobs")
    ):
        if task.name.endswith(job_id):
            task_name = task.name
    assert task_name, "the job's task is in the emulator's queue"

    raw = raw_http(
        port_of(stack.web_url),
        f"DELETE /jobs/{job_id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 "), raw
    assert b"content-length" not in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert rest == b""

    with pytest.raises(gexc.NotFound):
        client.get_task(name=task_name)
    job = requests.get(f"{stack.web_url}/jobs/{job_id}", timeout=5).json()
    assert job["status"] == "cancelled" and job["attempts"] == 0 and job["started_at"] is None


def test_cancelling_a_finished_job_is_409_and_an_unknown_one_404(stack: Stack) -> None:
    r = submit(stack, {"type": "demo.echo", "payload": {}})
    job = wait_for(stack, r.json()["id"], {"succeeded"})
    conflict = requests.delete(f"{stack.web_url}/jobs/{job['id']}", timeout=5)
    assert conflict.status_code == 409
    assert conflict.headers["Content-Type"] == PROBLEM
    assert conflict.json()["request_id"] == conflict.headers["X-Request-ID"]
    missing = requests.delete(f"{stack.web_url}/jobs/{'0' * 26}", timeout=5)
    assert missing.status_code == 404 and missing.headers["Content-Type"] == PROBLEM


def test_worker_answers_204_with_no_body_and_no_content_length_on_the_wire(stack: Stack) -> None:
    """A duplicate delivery of a finished job, sent as Cloud Tasks would, read byte by byte."""
    r = submit(stack, {"type": "demo.echo", "payload": {"x": 1}})
    job = wait_for(stack, r.json()["id"], {"succeeded"})
    body = json.dumps({"job_id": job["id"], "type": "demo.echo", "request_id": "r"}).encode()
    raw = raw_http(
        port_of(stack.worker_url),
        b"POST /tasks/run HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n"
        b"X-AppEngine-QueueName: offload-jobs\r\nX-AppEngine-TaskName: t1\r\n"
        b"X-AppEngine-TaskRetryCount: 1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 "), raw
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    assert rest == b""
    again = requests.get(f"{stack.web_url}/jobs/{job['id']}", timeout=5).json()
    assert again["attempts"] == 1  # not run a second time


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"type=demo.echo", "application/x-www-form-urlencoded", 415),
        (b'{"type": "demo.nope"}', "application/json", 422),
        (b'{"type": "demo.sleep", "payload": {"seconds": "soon"}}', "application/json", 422),
        (
            b'{"type": "demo.sleep", "payload": {"seconds": 1}, "deadline_seconds": 999}',
            "application/json",
            422,
        ),
        (
            b'{"type": "demo.echo", "payload": {"pad": "' + b"x" * 300_000 + b'"}}',
            "application/json",
            413,
        ),
    ],
)
def test_bad_submissions_get_problem_json_on_the_wire(
    stack: Stack, data: bytes, content_type: str, status: int
) -> None:
    before = requests.get(f"{stack.web_url}/jobs?limit=100", timeout=5).json()["jobs"]
    r = requests.post(
        f"{stack.web_url}/jobs", data=data, headers={"Content-Type": content_type}, timeout=10
    )
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["request_id"] == r.headers["X-Request-ID"]
    assert "Traceback" not in r.text
    if status == 422:
        assert all(set(e) == {"loc", "msg", "type"} for e in problem["errors"])
    after = requests.get(f"{stack.web_url}/jobs?limit=100", timeout=5).json()["jobs"]
    assert [j["id"] for j in after] == [j["id"] for j in before]  # nothing recorded


def test_router_errors_are_problem_json_with_allow_on_405(stack: Stack) -> None:
    missing = requests.get(f"{stack.web_url}/nowhere", timeout=5)
    assert missing.status_code == 404 and missing.headers["Content-Type"] == PROBLEM
    wrong = requests.put(f"{stack.web_url}/jobs", timeout=5)
    assert wrong.status_code == 405 and wrong.headers["Content-Type"] == PROBLEM
    assert "POST" in wrong.headers["Allow"] and "GET" in wrong.headers["Allow"]


def test_idempotency_key_returns_the_same_job_and_refuses_a_different_body(stack: Stack) -> None:
    body = {"type": "demo.echo", "payload": {"k": 1}}
    first = submit(stack, body, **{"Idempotency-Key": "order-42-" + str(time.time_ns())})
    key = first.request.headers["Idempotency-Key"]
    again = submit(stack, body, **{"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = submit(stack, {"type": "demo.echo", "payload": {"k": 2}}, **{"Idempotency-Key": key})
    assert other.status_code == 422 and other.headers["Content-Type"] == PROBLEM


def test_list_pages_newest_first_with_a_cursor_and_filters(stack: Stack) -> None:
    ids = [submit(stack, {"type": "demo.fail", "payload": {}}).json()["id"] for _ in range(3)]
    for job_id in ids:
        wait_for(stack, job_id, {"failed"})
    page = requests.get(f"{stack.web_url}/jobs?type=demo.fail&limit=2", timeout=5).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    assert page["next_cursor"] == ids[1]
    rest = requests.get(f"{stack.web_url}{page['next']}", timeout=5).json()
    assert ids[0] in [j["id"] for j in rest["jobs"]]
    failed = requests.get(f"{stack.web_url}/jobs?status=failed&limit=100", timeout=5).json()
    assert {j["status"] for j in failed["jobs"]} == {"failed"}


def test_request_id_is_kept_from_the_client_and_reaches_the_job(stack: Stack) -> None:
    rid = "client-req-" + str(time.time_ns())
    r = submit(stack, {"type": "demo.echo", "payload": {}}, **{"X-Request-ID": rid})
    assert r.headers["X-Request-ID"] == rid and r.json()["request_id"] == rid
    hostile = submit(
        stack, {"type": "demo.echo", "payload": {}}, **{"X-Request-ID": 'bad"id\\' + "x" * 300}
    )
    assert hostile.headers["X-Request-ID"] != 'bad"id'
    assert hostile.json()["request_id"] == hostile.headers["X-Request-ID"]
