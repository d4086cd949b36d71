"""The worker's retry contract, through the in-process test client (fast and exhaustive).

The same contract is proven on the wire, through the emulator and gunicorn, in
test_e2e_worker.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from offload.enqueue import TaskQueue
from offload.errors import ConfigError
from offload.ids import new_job_id
from offload.registry import JobRegistry
from offload.settings import load_settings
from offload.store import JobStore, NewJob
from tests.conftest import app_config
from worker import check_timeouts, create_app

AE_HEADERS = {"X-AppEngine-QueueName": "offload-jobs", "X-AppEngine-TaskName": "t-1"}


def add_job(app: Flask, job_type: str, payload: dict[str, Any], **kw: Any) -> str:
    store: JobStore = app.extensions["offload.store"]
    job_id = new_job_id()
    store.insert(
        NewJob(
            id=job_id,
            type=job_type,
            payload=payload,
            request_id="req-unit",
            trace=None,
            max_attempts=kw.pop("max_attempts", 3),
            deadline_seconds=kw.pop("deadline_seconds", 10.0),
            task_name=f"q/tasks/{job_id}",
        )
    )
    return job_id


def push(
    app: Flask,
    job_id: str,
    retry_count: int = 0,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Any:
    envelope = json.dumps({"job_id": job_id, "type": "x", "request_id": "req-unit"}).encode()
    return app.test_client().post(
        "/tasks/run",
        data=envelope if body is None else body,
        headers={**AE_HEADERS, "X-AppEngine-TaskRetryCount": str(retry_count), **(headers or {})},
    )


def job(app: Flask, job_id: str) -> Any:
    found = app.extensions["offload.store"].get(job_id)
    assert found is not None
    return found


def test_success_answers_204_and_stores_the_result(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.echo", {"a": 1})
    r = push(worker_app, job_id)
    assert r.status_code == 204 and r.data == b""
    done = job(worker_app, job_id)
    assert (done.status, done.result, done.attempts) == ("succeeded", {"a": 1}, 1)


def test_transient_failure_with_attempts_left_answers_500_for_app_engine(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.flaky", {"failures": 1})
    first = push(worker_app, job_id, retry_count=0)
    assert first.status_code == 500
    assert first.headers["Content-Type"] == "application/problem+json"
    assert job(worker_app, job_id).status == "queued"
    second = push(worker_app, job_id, retry_count=1)
    assert second.status_code == 204
    done = job(worker_app, job_id)
    assert done.status == "succeeded" and done.result == {"succeeded_on_attempt": 2}
    assert [a.outcome for a in done.attempt_log] == ["transient_error", "succeeded"]


def test_permanent_error_answers_204_and_fails_the_job(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.fail", {"message": "nope"})
    assert push(worker_app, job_id).status_code == 204
    failed = job(worker_app, job_id)
    assert (failed.status, failed.reason) == ("failed", "permanent_error")
    assert failed.error == {"type": "permanent_error", "message": "nope"}


def test_last_attempt_failing_transiently_fails_the_job_with_204(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.flaky", {"failures": 5}, max_attempts=2)
    assert push(worker_app, job_id, retry_count=0).status_code == 500
    assert push(worker_app, job_id, retry_count=1).status_code == 204
    failed = job(worker_app, job_id)
    assert (failed.status, failed.reason, failed.attempts) == ("failed", "transient_error", 2)


def test_per_job_max_attempts_hold_when_the_queue_allows_more(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.flaky", {"failures": 9}, max_attempts=3)
    # The queue retries up to 10 times; the job's 3 runs are all it gets.
    answers = [push(worker_app, job_id, retry_count=n).status_code for n in range(5)]
    assert answers == [500, 500, 204, 204, 204]
    failed = job(worker_app, job_id)
    assert (failed.status, failed.reason, failed.attempts) == ("failed", "transient_error", 3)


def test_deliveries_that_never_ran_the_job_do_not_use_up_its_attempts(
    worker_app: Flask,
) -> None:
    job_id = add_job(worker_app, "demo.flaky", {"failures": 1}, max_attempts=2)
    # Cloud Tasks counted 6 failed deliveries before this one (worker down, say): still
    # the job's first run, so its failure is retried, and the second run succeeds.
    assert push(worker_app, job_id, retry_count=6).status_code == 500
    assert push(worker_app, job_id, retry_count=7).status_code == 204
    assert job(worker_app, job_id).status == "succeeded"


def test_deadline_exceeded_is_caught_and_retried_then_fails(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.sleep", {"seconds": 5}, deadline_seconds=0.3, max_attempts=2)
    assert push(worker_app, job_id, retry_count=0).status_code == 500
    assert push(worker_app, job_id, retry_count=1).status_code == 204
    failed = job(worker_app, job_id)
    assert (failed.status, failed.reason) == ("failed", "deadline_exceeded")
    assert [a.outcome for a in failed.attempt_log] == ["deadline_exceeded", "deadline_exceeded"]


def test_busy_python_loop_is_interrupted_by_the_deadline(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.busy", {"seconds": 5}, deadline_seconds=0.3, max_attempts=1)
    assert push(worker_app, job_id).status_code == 204
    assert job(worker_app, job_id).reason == "deadline_exceeded"


def test_duplicate_delivery_of_a_finished_job_does_not_run_it_again(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.echo", {})
    push(worker_app, job_id)
    assert push(worker_app, job_id, retry_count=1).status_code == 204
    assert job(worker_app, job_id).attempts == 1


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b'{"job_id": 5}', b'{"job_id": "../../etc"}', b"[]"]
)
def test_malformed_envelope_answers_204_so_it_is_not_retried_forever(
    worker_app: Flask, body: bytes
) -> None:
    assert push(worker_app, "x", body=body).status_code == 204


def test_unknown_job_answers_204(worker_app: Flask) -> None:
    assert push(worker_app, new_job_id()).status_code == 204


def test_unknown_job_type_fails_the_job_without_retry(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "gone.type", {})
    assert push(worker_app, job_id).status_code == 204
    assert job(worker_app, job_id).reason == "unknown_job_type"


def test_payload_that_no_longer_validates_fails_the_job(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.sleep", {"seconds": "later"})
    assert push(worker_app, job_id).status_code == 204
    assert job(worker_app, job_id).reason == "invalid_payload"


def test_push_without_app_engine_headers_is_refused_before_any_work(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.echo", {})
    r = worker_app.test_client().post(
        "/tasks/run", data=json.dumps({"job_id": job_id}), headers={"X-AppEngine-TaskName": "t"}
    )
    assert r.status_code == 403 and r.headers["Content-Type"] == "application/problem+json"
    assert job(worker_app, job_id).attempts == 0


def test_worker_refuses_to_start_without_an_auth_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WORKER_AUTH"):
        create_app(app_config(tmp_path, WORKER_AUTH=""))


def test_worker_refuses_oidc_without_an_audience(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AUDIENCE"):
        create_app(app_config(tmp_path, WORKER_AUTH="oidc", TASK_SERVICE_ACCOUNT="a@b"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"WORKER_TIMEOUT_SECONDS": 30}, "gunicorn timeout"),
        ({"PLATFORM_TIMEOUT_SECONDS": 20}, "platform's request timeout"),
        ({"HARD_GRACE_SECONDS": 20.0}, "OFFLOAD_HARD_GRACE_SECONDS=20"),
    ],
)
def test_inconsistent_timeouts_refuse_to_start_naming_the_values(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_timeouts(
            load_settings(app_config(tmp_path, **{"HARD_GRACE_SECONDS": 2.0, **overrides})),
            JobRegistry.from_modules(["jobs"]),
        )


def test_attempt_number_comes_from_the_proven_targets_headers_only(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.flaky", {"failures": 1}, max_attempts=2)
    # An X-CloudTasks-* retry count means nothing on an App Engine push: attempt 1 fails
    # and is retried (500), not taken for the last attempt.
    r = worker_app.test_client().post(
        "/tasks/run",
        data=json.dumps({"job_id": job_id}),
        headers={**AE_HEADERS, "X-CloudTasks-TaskRetryCount": "5"},
    )
    assert r.status_code == 500
    assert [a.number for a in job(worker_app, job_id).attempt_log] == [1]


def test_a_delivery_finding_the_job_held_looks_again_when_the_lease_ends(
    worker_app: Flask,
) -> None:
    """Not at the queue's backoff pace: a task for the holder's lease end, and a 204."""
    import datetime as dt

    from offload.ids import lease_end_task_id
    from offload.testing import InMemoryCloudTasks

    cloud_tasks = InMemoryCloudTasks()
    worker_app.extensions["offload.tasks"] = TaskQueue(
        worker_app.extensions["offload.settings"], client=cloud_tasks
    )
    store: JobStore = worker_app.extensions["offload.store"]
    job_id = add_job(worker_app, "demo.echo", {})
    holder = store.claim(job_id, attempt=1, lease_seconds=60)  # a run holds it (or died)
    assert holder.won and holder.job is not None and holder.job.lease_expires_at is not None
    r = push(worker_app, job_id)
    assert r.status_code == 204 and r.data == b""
    (name,) = [n for n in cloud_tasks.tasks if n.endswith(lease_end_task_id(job_id, 1))]
    when = cloud_tasks.tasks[name].schedule_time
    assert when == holder.job.lease_expires_at + dt.timedelta(seconds=1)
    # Again while the same run holds it: the same task (ALREADY_EXISTS), still a 204.
    assert push(worker_app, job_id).status_code == 204
    assert len(cloud_tasks.tasks) == 1
    # Cloud Tasks refusing it: the push is retried as before.
    store.finish(job_id, holder.token or "", status="succeeded", outcome="succeeded")
    other = add_job(worker_app, "demo.echo", {})
    assert store.claim(other, attempt=1, lease_seconds=60).won
    cloud_tasks.unavailable = True
    assert push(worker_app, other).status_code == 500
