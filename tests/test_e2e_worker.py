"""The worker's deadlines, retries, duplicates and cancellation, through emulator and gunicorn."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from offload.ids import lease_end_task_id
from offload.store import migrate
from tests.conftest import (
    LOCATION,
    PROJECT,
    QUEUE,
    ROOT,
    TEST_QUEUE_YAML,
    Stack,
    free_port,
    make_stack,
)
from tests.test_e2e_walkthrough import submit, wait_for

pytestmark = pytest.mark.e2e

FINAL = {"succeeded", "failed", "cancelled"}


def seconds_between(a: str, b: str) -> float:
    parse = dt.datetime.fromisoformat
    return (parse(b.replace("Z", "+00:00")) - parse(a.replace("Z", "+00:00"))).total_seconds()


@pytest.mark.parametrize("job_type", ["demo.sleep", "demo.busy"])
def test_job_past_its_budget_gets_deadline_errors_is_retried_then_fails(
    stack: Stack, job_type: str
) -> None:
    r = submit(stack, {"type": job_type, "payload": {"seconds": 30}, "deadline_seconds": 0.5})
    job = wait_for(stack, r.json()["id"], FINAL, timeout=60)
    assert (job["status"], job["reason"]) == ("failed", "deadline_exceeded"), job
    attempts = job["attempt_log"]
    assert [a["outcome"] for a in attempts] == ["deadline_exceeded"] * 3  # max_attempts = 3
    for a in attempts:
        # Answered right after the 0.5 s budget, far before gunicorn's 60 s hard limit.
        assert seconds_between(a["started_at"], a["finished_at"]) < 10
    assert job["error"]["type"] == "deadline_exceeded"


def test_a_job_that_swallows_its_deadline_is_stopped_by_the_hard_limit(stack: Stack) -> None:
    r = submit(stack, {"type": "test.stubborn", "payload": {"seconds": 600}})
    job = wait_for(stack, r.json()["id"], FINAL, timeout=60)
    assert (job["status"], job["reason"]) == ("failed", "deadline_exceeded"), job
    assert [a["outcome"] for a in job["attempt_log"]] == ["deadline_exceeded"] * 2
    assert "ignored its deadline" in job["error"]["message"]
    # The worker service survived its processes ending themselves.
    assert requests.get(f"{stack.worker_url}/healthz", timeout=5).status_code == 200


def test_flaky_job_succeeds_after_its_transient_failures(stack: Stack) -> None:
    r = submit(stack, {"type": "demo.flaky", "payload": {"failures": 2}})
    job = wait_for(stack, r.json()["id"], FINAL)
    assert job["status"] == "succeeded" and job["result"] == {"succeeded_on_attempt": 3}
    assert [a["outcome"] for a in job["attempt_log"]] == [
        "transient_error",
        "transient_error",
        "succeeded",
    ]
    assert [a["number"] for a in job["attempt_log"]] == [1, 2, 3]


def test_permanently_failing_job_is_delivered_exactly_once(stack: Stack) -> None:
    r = submit(stack, {"type": "demo.fail", "payload": {"message": "bad input"}})
    job_id = r.json()["id"]
    job = wait_for(stack, job_id, FINAL)
    assert (job["status"], job["reason"]) == ("failed", "permanent_error")
    client = stack.tasks_client()
    queue = client.queue_path("offload-test", "us-central1", "offload-jobs")
    assert not [t for t in client.list_tasks(parent=queue) if t.name.endswith(job_id)]
    dispatches = [
        line
        for line in (stack.log_dir / "emulator.log").read_text().splitlines()
        if job_id in line and '"status"' in line
    ]
    assert len(dispatches) == 1, dispatches


def push(stack: Stack, job_id: str, retry_count: int = 0, **headers: str) -> requests.Response:
    body = json.dumps({"job_id": job_id, "type": "demo.sleep", "request_id": "r"})
    return requests.post(
        f"{stack.worker_url}/tasks/run",
        data=body,
        headers={
            "X-AppEngine-QueueName": "offload-jobs",
            "X-AppEngine-TaskName": "manual",
            "X-AppEngine-TaskRetryCount": str(retry_count),
            **headers,
        },
        timeout=30,
    )


def test_two_concurrent_deliveries_run_the_job_once(stack: Stack) -> None:
    r = submit(stack, {"type": "demo.sleep", "payload": {"seconds": 1}, "delay_seconds": 600})
    job_id = r.json()["id"]
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def deliver() -> None:
        barrier.wait()
        answers.append(push(stack, job_id).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The loser leaves a task for the winner's lease end (it may die) and is done: 204.
    assert sorted(answers) == [204, 204]
    job = requests.get(f"{stack.web_url}/jobs/{job_id}", timeout=5).json()
    assert job["status"] == "succeeded" and job["attempts"] == 1
    queue = f"projects/{PROJECT}/locations/{LOCATION}/queues/{QUEUE}"
    lease_task = stack.tasks_client().get_task(name=f"{queue}/tasks/{lease_end_task_id(job_id, 1)}")
    assert lease_task.schedule_time.timestamp() > time.time()  # not before the lease ends
    assert push(stack, job_id, retry_count=1).status_code == 204  # finished: not run again
    requests.delete(f"{stack.web_url}/jobs/{job_id}", timeout=5)


def test_cancel_reaches_a_running_job(stack: Stack) -> None:
    r = submit(stack, {"type": "demo.sleep", "payload": {"seconds": 20}})
    job_id = r.json()["id"]
    wait_for(stack, job_id, {"running"})
    cancel = requests.delete(f"{stack.web_url}/jobs/{job_id}", timeout=5)
    assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
    job = wait_for(stack, job_id, FINAL, timeout=15)
    assert job["status"] == "cancelled"
    assert [a["outcome"] for a in job["attempt_log"]] == ["cancelled"]


def test_progress_is_visible_while_the_job_runs(stack: Stack) -> None:
    r = submit(stack, {"type": "demo.sleep", "payload": {"seconds": 3}})
    job_id = r.json()["id"]
    seen: list[float] = []
    end = threading.Event()
    while not end.wait(0.2):
        job = requests.get(f"{stack.web_url}/jobs/{job_id}", timeout=5).json()
        if job["progress"]:
            seen.append(job["progress"]["fraction"])
        if job["status"] in FINAL:
            break
    assert any(0 < f < 1 for f in seen), seen
    assert seen[-1] == 1.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-AppEngine-QueueName": "offload-jobs"},
        {"X-CloudTasks-QueueName": "offload-jobs", "X-CloudTasks-TaskName": "t"},
    ],
)
def test_pushes_without_proof_are_refused_before_any_work(
    stack: Stack, headers: dict[str, str]
) -> None:
    r = submit(stack, {"type": "demo.echo", "payload": {}, "delay_seconds": 600})
    job_id = r.json()["id"]
    answer = requests.post(
        f"{stack.worker_url}/tasks/run", json={"job_id": job_id}, headers=headers, timeout=5
    )
    assert answer.status_code in (401, 403)
    assert answer.headers["Content-Type"] == "application/problem+json"
    job = requests.get(f"{stack.web_url}/jobs/{job_id}", timeout=5).json()
    assert job["attempts"] == 0
    requests.delete(f"{stack.web_url}/jobs/{job_id}", timeout=5)


def test_worker_with_inconsistent_timeouts_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    env: dict[str, Any] = {
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "OFFLOAD_LOG_DIR": "",
        "PATH": "/usr/bin:/bin",
    }
    migrate.upgrade(env["OFFLOAD_DATABASE_URL"])
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--name", "worker",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", "20",
         "worker.main:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "inconsistent timeouts" in output
    assert "WORKER_TIMEOUT_SECONDS=20" in output


def test_a_job_stuck_where_no_signal_reaches_is_ended_by_gunicorns_timeout(
    tmp_path: Path,
) -> None:
    """The SIGALRM deadline cannot run inside one long C call; gunicorn's timeout ends it.

    Budgets here are tiny so that a 16 s gunicorn timeout is consistent with them.
    """
    stack = make_stack(
        tmp_path,
        env={"OFFLOAD_JOB_MODULES": "tests.testjobs", "OFFLOAD_DISPATCH_MARGIN_SECONDS": "4"},
        worker_timeout=16,
        # Deliveries answered "busy" while a stuck run holds the job count as retries.
        queue_yaml=TEST_QUEUE_YAML.replace("task_retry_limit: 10", "task_retry_limit: 100"),
    )
    try:
        r = submit(stack, {"type": "test.stuck", "payload": {"seconds": 0}})
        job = wait_for(stack, r.json()["id"], FINAL, timeout=120)
        assert (job["status"], job["reason"]) == ("failed", "interrupted"), job
        # Both runs were killed, the next delivery closed each as interrupted, and no two
        # ran at once: the lease outlasts gunicorn's timeout.
        outcomes = [a["outcome"] for a in job["attempt_log"]]
        assert outcomes == ["interrupted", "interrupted"], job
        runs = job["attempt_log"]
        assert runs[1]["started_at"] >= runs[0]["finished_at"]
        assert "WORKER TIMEOUT" in stack.procs["worker"].output()
    finally:
        stack.stop()
