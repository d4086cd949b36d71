"""The web API through the in-process test client, on the in-memory Cloud Tasks.

The first test also runs on the real emulator over gRPC; test_e2e_*.py run web itself.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from google.api_core import exceptions as gexc

from offload.store import JobStore


@pytest.fixture(params=["in-memory", "emulator"])
def either_app(request: pytest.FixtureRequest) -> Flask:
    """web on the in-memory Cloud Tasks, then on the real emulator."""
    name = "web_app" if request.param == "in-memory" else "web_app_on_emulator"
    app: Flask = request.getfixturevalue(name)
    return app


def test_submit_records_the_job_and_creates_its_task(either_app: Flask) -> None:
    web_app, client = either_app, either_app.test_client()
    r = client.post("/jobs", json={"type": "demo.echo", "payload": {"x": 1}, "delay_seconds": 300})
    assert r.status_code == 202
    job = r.get_json()
    store: JobStore = web_app.extensions["offload.store"]
    stored = store.get(job["id"])
    assert stored is not None and stored.task_name
    task = web_app.extensions["offload.tasks"].client.get_task(name=stored.task_name)
    assert task.app_engine_http_request.relative_uri == "/tasks/run"
    assert task.app_engine_http_request.app_engine_routing.service == "worker"
    assert task.app_engine_http_request.headers["X-Request-ID"] == job["request_id"]
    assert task.app_engine_http_request.headers["traceparent"].startswith("00-")
    assert task.dispatch_deadline.seconds == 10 + 15  # demo.echo budget + margin
    assert task.schedule_time.timestamp() > 0
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    try:
        web_app.extensions["offload.tasks"].client.get_task(name=stored.task_name)
    except gexc.NotFound:
        pass
    else:
        raise AssertionError("the cancelled job's task still exists")


def test_deadline_seconds_may_tighten_the_budget(client: FlaskClient) -> None:
    r = client.post(
        "/jobs",
        json={
            "type": "demo.sleep",
            "payload": {"seconds": 1},
            "deadline_seconds": 2,
            "delay_seconds": 300,
        },
    )
    assert r.status_code == 202 and r.get_json()["deadline_seconds"] == 2


def test_unknown_fields_are_refused(client: FlaskClient) -> None:
    r = client.post("/jobs", json={"type": "demo.echo", "priority": 9})
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"] == ["body", "priority"]


def test_bad_idempotency_key_is_400(client: FlaskClient) -> None:
    r = client.post("/jobs", json={"type": "demo.echo"}, headers={"Idempotency-Key": "a b"})
    assert r.status_code == 400


def test_get_unknown_and_malformed_ids_are_404(client: FlaskClient) -> None:
    assert client.get("/jobs/" + "0" * 26).status_code == 404
    assert client.get("/jobs/not-an-id").status_code == 404


def test_list_limit_is_validated_and_capped(client: FlaskClient) -> None:
    assert client.get("/jobs?limit=0").status_code == 422
    assert client.get("/jobs?limit=x").status_code == 422
    assert client.get("/jobs?cursor=bad").status_code == 422
    assert client.get("/jobs?limit=100000").status_code == 200


def test_unexpected_exception_is_500_problem_without_a_stack_trace(web_app: Flask) -> None:
    @web_app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    r = web_app.test_client().get("/boom")
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "application/problem+json"
    assert b"secret internals" not in r.data and b"Traceback" not in r.data


def test_cloud_tasks_unreachable_records_the_job_pending_and_stops_waiting(
    tmp_path: object,
) -> None:
    import time
    from pathlib import Path

    from tests.conftest import app_config, free_port
    from web import create_app

    app = create_app(
        app_config(
            Path(str(tmp_path)),
            ENQUEUE_TIMEOUT_SECONDS=0.5,
            BREAKER_RESET_SECONDS=60,
            TASKS_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
        )
    )
    client = app.test_client()
    r = client.post("/jobs", json={"type": "demo.echo"})
    assert r.status_code == 202 and r.get_json()["wakeup"] == "pending"
    assert app.extensions["offload.tasks"].breaker.state == "open"
    started = time.monotonic()
    second = client.post("/jobs", json={"type": "demo.echo"})
    assert second.status_code == 202 and second.get_json()["wakeup"] == "pending"
    assert time.monotonic() - started < 0.4  # the open circuit does not wait 0.5 s
    jobs = client.get("/jobs").get_json()["jobs"]
    assert [(j["status"], j["wakeup"]) for j in jobs] == [("queued", "pending")] * 2
    # Cancel still works: the job is cancelled in the store, its (absent) task not awaited.
    assert client.delete(f"/jobs/{jobs[0]['id']}").status_code == 204
    app.extensions["offload.tasks"].close()


def test_a_store_that_cannot_record_the_job_is_503(tmp_path: object) -> None:
    from pathlib import Path

    from tests.conftest import app_config
    from web import create_app

    app = create_app(app_config(Path(str(tmp_path))))
    store: JobStore = app.extensions["offload.store"]
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE offload_attempts")
        conn.exec_driver_sql("DROP TABLE offload_jobs")
    r = app.test_client().post("/jobs", json={"type": "demo.echo"})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.headers["Content-Type"] == "application/problem+json"
    app.extensions["offload.tasks"].close()


def test_hosted_defaults_use_real_cloud_tasks_and_no_log_files() -> None:
    from offload.settings import load_settings

    hosted = load_settings(environ={"GAE_ENV": "standard"})
    assert hosted.hosted and hosted.tasks_emulator_host == "" and hosted.log_dir == ""
    named = load_settings(environ={"K_SERVICE": "web", "OFFLOAD_TASKS_EMULATOR_HOST": "h:1"})
    assert named.tasks_emulator_host == "h:1"
    local = load_settings(environ={})
    assert not local.hosted and local.tasks_emulator_host == "127.0.0.1:8123"


def test_app_engine_start_and_warmup_requests_answer_204(client: FlaskClient) -> None:
    assert client.get("/_ah/warmup").status_code == 204
    assert client.get("/_ah/start").status_code == 204


def test_deeply_nested_json_is_400_not_500(client: FlaskClient) -> None:
    deep = b'{"type": "demo.echo", "payload": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    r = client.post("/jobs", data=deep, content_type="application/json")
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"


def test_nan_and_infinity_are_not_json(client: FlaskClient) -> None:
    for bad in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"type": "demo.echo", "payload": {"x": ' + bad + b"}}"
        r = client.post("/jobs", data=body, content_type="application/json")
        assert r.status_code == 400, bad


def test_a_type_filter_with_a_nul_byte_is_422(client: FlaskClient) -> None:
    assert client.get("/jobs?type=demo%00echo").status_code == 422
