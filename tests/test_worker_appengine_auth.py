"""App Engine push headers are a proof only on App Engine, or from loopback locally.

On App Engine the front end strips ``X-AppEngine-*`` from outside requests; anywhere
else anyone could send them, run any job at once (a delayed one too) or use up its
attempts with a forged retry count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from offload.errors import ConfigError
from offload.platform import detect_platform
from tests.conftest import app_config
from tests.test_worker_unit import AE_HEADERS, add_job, job, push
from web import create_app as create_web
from worker import create_app as create_worker


def push_from(app: Flask, job_id: str, remote: str, **headers: str) -> Any:
    return app.test_client().post(
        "/tasks/run",
        json={"job_id": job_id, "type": "demo.echo", "request_id": "r"},
        headers={**AE_HEADERS, **headers},
        environ_base={"REMOTE_ADDR": remote},
    )


@pytest.mark.parametrize("remote", ["10.0.0.7", "192.168.1.20", "2001:db8::1", "::ffff:10.0.0.1"])
def test_locally_a_push_with_app_engine_headers_from_off_loopback_is_refused(
    worker_app: Flask, remote: str
) -> None:
    job_id = add_job(worker_app, "demo.echo", {"a": 1})
    r = push_from(worker_app, job_id, remote, **{"X-AppEngine-TaskRetryCount": "9"})
    assert r.status_code == 403
    assert r.mimetype == "application/problem+json"
    untouched = job(worker_app, job_id)
    assert (untouched.status, untouched.attempts) == ("queued", 0)


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"])
def test_locally_the_emulator_on_loopback_is_trusted(worker_app: Flask, remote: str) -> None:
    job_id = add_job(worker_app, "demo.echo", {"a": 1})
    assert push_from(worker_app, job_id, remote).status_code == 204
    assert job(worker_app, job_id).status == "succeeded"


def test_a_push_from_a_queue_that_is_not_configured_is_refused(worker_app: Flask) -> None:
    job_id = add_job(worker_app, "demo.echo", {"a": 1})
    r = push(worker_app, job_id, headers={"X-AppEngine-QueueName": "someone-elses-queue"})
    assert r.status_code == 403
    assert job(worker_app, job_id).status == "queued"


def test_on_app_engine_the_headers_are_a_proof_from_any_address(tmp_path: Path) -> None:
    app = create_worker(app_config(tmp_path, PLATFORM="appengine"))
    try:
        job_id = add_job(app, "demo.echo", {"a": 1})
        assert push_from(app, job_id, "10.0.0.7").status_code == 204
        assert job(app, job_id).status == "succeeded"
    finally:
        app.extensions["offload.store"].dispose()


@pytest.mark.parametrize(
    ("variable", "value", "where"),
    [
        ("K_SERVICE", "worker", "Cloud Run"),
        ("KUBERNETES_SERVICE_HOST", "10.0.0.1", "this host"),
        ("GAE_ENV", "flex", "this host"),
    ],
)
def test_the_worker_refuses_to_start_with_appengine_auth_off_app_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, where: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("OFFLOAD_WORKER_AUTH", "appengine")
    with pytest.raises(ConfigError, match="OFFLOAD_WORKER_AUTH=oidc") as caught:
        create_worker(app_config(tmp_path))
    assert where in str(caught.value)


def test_platforms_are_told_apart() -> None:
    assert detect_platform({"GAE_ENV": "standard"}) == "appengine"
    assert detect_platform({"K_SERVICE": "worker"}) == "cloudrun"
    assert detect_platform({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == "hosted"
    assert detect_platform({}) == "local"


def test_app_engine_cron_header_from_off_loopback_is_refused_locally(worker_app: Flask) -> None:
    client = worker_app.test_client()
    cron = {"X-Appengine-Cron": "true"}
    forged = client.get("/cron/expire", headers=cron, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert forged.status_code == 403
    assert client.get("/cron/expire", headers=cron).status_code == 200


@pytest.mark.parametrize(("platform", "taken"), [("local", False), ("appengine", True)])
def test_app_engines_request_log_id_names_the_request_only_on_app_engine(
    tmp_path: Path, platform: str, taken: bool
) -> None:
    app = create_web(app_config(tmp_path, PLATFORM=platform, TASKS_EMULATOR_HOST="127.0.0.1:9"))
    try:
        r = app.test_client().get("/jobs", headers={"X-Appengine-Request-Log-Id": "forged-id-1"})
        assert (r.headers["X-Request-ID"] == "forged-id-1") is taken
    finally:
        app.extensions["offload.tasks"].close()
        app.extensions["offload.store"].dispose()
