"""HTTP targets (Cloud Run's shape): pushes carry an OIDC token the worker verifies."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.cloud import tasks_v2

from tests.conftest import LOCATION, PROJECT, QUEUE, Stack, make_stack
from tests.test_e2e_walkthrough import submit, wait_for

pytestmark = pytest.mark.e2e

ACCOUNT = "tasks@offload-test.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def oidc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = make_stack(
        Path(tmp_path_factory.mktemp("oidc")),
        env={
            "OFFLOAD_TASK_TARGET": "http",
            "OFFLOAD_WORKER_AUTH": "oidc",
            "OFFLOAD_TASK_SERVICE_ACCOUNT": ACCOUNT,
        },
    )
    yield stack
    stack.stop()


def test_flaky_job_runs_through_http_targets_with_verified_tokens(oidc_stack: Stack) -> None:
    r = submit(oidc_stack, {"type": "demo.flaky", "payload": {"failures": 1}})
    job = wait_for(oidc_stack, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded"
    assert [a["outcome"] for a in job["attempt_log"]] == ["transient_error", "succeeded"]


def test_retry_on_http_targets_is_503_with_retry_after(oidc_stack: Stack) -> None:
    r = submit(oidc_stack, {"type": "demo.flaky", "payload": {"failures": 1}})
    job_id = r.json()["id"]
    wait_for(oidc_stack, job_id, {"succeeded"})
    lines = [json.loads(x) for x in (oidc_stack.log_dir / "emulator.log").read_text().splitlines()]
    attempts = [
        (e["time"], e["logging.googleapis.com/labels"]["status"])
        for e in lines
        if job_id in e["logging.googleapis.com/labels"].get("task", "")
        and "status" in e["logging.googleapis.com/labels"]  # dispatch lines, not "created"
    ]
    assert [status for _, status in attempts] == ["503", "204"]
    gap = dt.datetime.fromisoformat(attempts[1][0]) - dt.datetime.fromisoformat(attempts[0][0])
    assert gap.total_seconds() >= 1.5  # the worker's Retry-After: 2 was honoured


def _task_status_after(client: tasks_v2.CloudTasksClient, name: str) -> int:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        task = client.get_task(name=name)
        if task.dispatch_count >= 1 and task.last_attempt.response_status.code:
            client.delete_task(name=name)
            return int(task.last_attempt.response_status.code)
        time.sleep(0.1)
    raise AssertionError("task never dispatched")


@pytest.mark.parametrize(
    ("audience", "email"),
    [("https://elsewhere.example.com", ACCOUNT), (None, "evil@attacker.iam.gserviceaccount.com")],
)
def test_tokens_for_another_audience_or_account_are_refused(
    oidc_stack: Stack, audience: str | None, email: str
) -> None:
    client = oidc_stack.tasks_client()
    task = client.create_task(
        parent=client.queue_path(PROJECT, LOCATION, QUEUE),
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=f"{oidc_stack.worker_url}/tasks/run",
                body=b'{"job_id": "01m80000000000000000000000"}',
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=email,
                    audience=audience or f"{oidc_stack.worker_url}",
                ),
            )
        ),
    )
    # Cloud Tasks reports the handler's 401/403 as google.rpc codes UNAUTHENTICATED (16)
    # and PERMISSION_DENIED (7).
    assert _task_status_after(client, task.name) in (16, 7)


def test_app_engine_headers_are_not_proof_on_http_targets(oidc_stack: Stack) -> None:
    answer = requests.post(
        f"{oidc_stack.worker_url}/tasks/run",
        json={"job_id": "01m80000000000000000000000"},
        headers={
            "X-AppEngine-QueueName": QUEUE,
            "X-AppEngine-TaskName": "t",
            "X-CloudTasks-QueueName": QUEUE,
            "X-CloudTasks-TaskName": "t",
        },
        timeout=5,
    )
    assert answer.status_code == 401
    assert "WWW-Authenticate" in answer.headers
