"""web on the in-memory Cloud Tasks client: fast checks of what it asks Cloud Tasks for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from offload.testing import InMemoryCloudTasks
from tests.conftest import app_config


@pytest.fixture
def cloud_tasks() -> InMemoryCloudTasks:
    return InMemoryCloudTasks()


@pytest.fixture
def stub_app(tmp_path: Path, cloud_tasks: InMemoryCloudTasks) -> Iterator[Flask]:
    from web import create_app

    app = create_app(app_config(tmp_path), tasks_client=cloud_tasks)
    yield app
    app.extensions["offload.store"].dispose()


def test_a_submit_creates_one_named_task_with_the_envelope(
    stub_app: Flask, cloud_tasks: InMemoryCloudTasks
) -> None:
    r = stub_app.test_client().post("/jobs", json={"type": "demo.echo", "payload": {"a": 1}})
    assert r.status_code == 202
    job = r.get_json()
    (task,) = cloud_tasks.tasks.values()
    assert task.name.endswith("/tasks/" + job["id"].replace("-", "_")) or job["id"] in task.name
    body = task.app_engine_http_request.body
    assert b'"job_id":"%s"' % job["id"].encode() in body
    assert task.app_engine_http_request.headers["X-Request-ID"] == job["request_id"]


def test_cancelling_a_queued_job_deletes_its_task(
    stub_app: Flask, cloud_tasks: InMemoryCloudTasks
) -> None:
    http = stub_app.test_client()
    job = http.post(
        "/jobs", json={"type": "demo.echo", "payload": {}, "delay_seconds": 60}
    ).get_json()
    assert http.delete(f"/jobs/{job['id']}").status_code == 204
    assert cloud_tasks.tasks == {} and len(cloud_tasks.gone) == 1
    assert http.get(f"/jobs/{job['id']}").get_json()["status"] == "cancelled"
