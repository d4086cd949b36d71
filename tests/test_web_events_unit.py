"""web in process on the in-memory Cloud Tasks client: the small things and the webhook task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from offload.testing import InMemoryCloudTasks
from tests.conftest import app_config

SECRET = "whsec_" + "A" * 44


@pytest.fixture
def cloud_tasks() -> InMemoryCloudTasks:
    return InMemoryCloudTasks()


@pytest.fixture
def app(tmp_path: Path, cloud_tasks: InMemoryCloudTasks) -> Iterator[Flask]:
    from web import create_app

    app = create_app(app_config(tmp_path, WEBHOOK_SECRET=SECRET), tasks_client=cloud_tasks)
    yield app
    app.extensions["offload.store"].dispose()


def test_list_items_leave_out_the_attempt_log_and_a_job_shows_both_start_times(
    app: Flask,
) -> None:
    http = app.test_client()
    job = http.post("/jobs", json={"type": "demo.echo", "payload": {}}).get_json()
    (item,) = http.get("/jobs").get_json()["jobs"]
    assert "attempt_log" not in item and item["id"] == job["id"]
    one = http.get(f"/jobs/{job['id']}").get_json()
    assert one["attempt_log"] == []
    assert one["first_started_at"] is None and one["started_at"] is None
    assert one["notify"] is None


def test_the_422_for_an_unknown_job_type_lists_the_types(app: Flask) -> None:
    r = app.test_client().post("/jobs", json={"type": "demo.nope"})
    assert r.status_code == 422
    assert "demo.echo" in r.get_json()["detail"] and "demo.sleep" in r.get_json()["detail"]


def test_cancelling_a_queued_job_with_a_webhook_creates_its_delivery_task(
    app: Flask, cloud_tasks: InMemoryCloudTasks
) -> None:
    http = app.test_client()
    job = http.post(
        "/jobs",
        json={
            "type": "demo.echo",
            "delay_seconds": 60,
            "notify": {"url": "http://127.0.0.1:9/hook"},
        },
    ).get_json()
    assert job["notify"] == {"url": "http://127.0.0.1:9/hook", "deliveries": []}
    assert http.delete(f"/jobs/{job['id']}").status_code == 204
    webhook_tasks = [
        t
        for t in cloud_tasks.tasks.values()
        if t.app_engine_http_request.relative_uri == "/tasks/webhook"
    ]
    assert len(webhook_tasks) == 1
    assert webhook_tasks[0].app_engine_http_request.body == (
        b'{"delivery_id":"msg_%s"}' % job["id"].encode()
    )
    (delivery,) = http.get(f"/jobs/{job['id']}").get_json()["notify"]["deliveries"]
    assert delivery["state"] == "enqueued" and delivery["event"] == "job.cancelled"


def test_a_resubmitted_job_keeps_its_webhook(app: Flask) -> None:
    http = app.test_client()
    url = "http://127.0.0.1:9/hook"
    job = http.post(
        "/jobs", json={"type": "demo.echo", "delay_seconds": 60, "notify": {"url": url}}
    ).get_json()
    http.delete(f"/jobs/{job['id']}")
    again = http.post(f"/jobs/{job['id']}/resubmit").get_json()
    assert again["notify"]["url"] == url


def test_without_a_secret_notify_is_refused(tmp_path: Path) -> None:
    from web import create_app

    app = create_app(app_config(tmp_path), tasks_client=InMemoryCloudTasks())
    r = app.test_client().post(
        "/jobs", json={"type": "demo.echo", "notify": {"url": "https://example.com/h"}}
    )
    assert r.status_code == 422 and "OFFLOAD_WEBHOOK_SECRET" in r.get_json()["detail"]
    app.extensions["offload.store"].dispose()
