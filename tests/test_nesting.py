"""Deep nesting is a 4xx (web) or a failed job (worker), never a 500 nor a retry loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from offload.jsondepth import MAX_JSON_DEPTH, too_deep
from tests.conftest import app_config
from tests.test_worker_unit import add_job, job, push


def nested(levels: int, leaf: str = "{}", key: str = "a") -> str:
    """A JSON object ``levels`` deep (each level an object with one member)."""
    return f'{{"{key}":' * levels + leaf + "}" * levels


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 256, 900, 20_000])
@pytest.mark.parametrize("leaf", ["{}", "[]", "[[1]]"])
def test_a_payload_nested_past_the_limit_is_a_400_problem(
    client: FlaskClient, levels: int, leaf: str
) -> None:
    body = '{"type":"demo.echo","payload":' + nested(levels, leaf) + "}"
    r = client.post("/jobs", data=body, content_type="application/json")
    assert r.status_code == 400, r.get_data()[:300]
    assert r.mimetype == "application/problem+json"
    problem = r.get_json()
    assert problem["type"].endswith("/too-deep")
    assert str(MAX_JSON_DEPTH) in problem["detail"]


def test_a_payload_nested_to_the_limit_is_accepted(client: FlaskClient) -> None:
    # The body is one level, the payload object the second: 62 more fit.
    body = '{"type":"demo.echo","delay_seconds":300,"payload":' + nested(MAX_JSON_DEPTH - 2) + "}"
    r = client.post("/jobs", data=body, content_type="application/json")
    assert r.status_code == 202, r.get_data()[:300]
    assert client.get(r.headers["Location"]).status_code == 200
    assert client.delete(r.headers["Location"]).status_code == 204


def test_arrays_count_as_levels_too(client: FlaskClient) -> None:
    body = '{"type":"demo.echo","payload":{"a":' + "[" * 70 + "]" * 70 + "}}"
    r = client.post("/jobs", data=body, content_type="application/json")
    assert r.status_code == 400
    assert "body.payload.a.0.0" in r.get_json()["detail"]


def test_depth_is_measured_without_recursion() -> None:
    deep: Any = []
    for _ in range(50_000):
        deep = [deep]
    assert too_deep(deep) == [0] * MAX_JSON_DEPTH
    assert too_deep({"a": [1, {"b": {}}]}, 4) is None  # object, array, object, object
    assert too_deep({"a": [1, {"b": {}}]}, 3) == ["a", 1, "b"]


@pytest.fixture
def deep_worker(tmp_path: Path) -> Any:
    from worker import create_app

    app = create_app(app_config(tmp_path, JOB_MODULES="jobs,tests.testjobs"))
    yield app
    app.extensions["offload.store"].dispose()


@pytest.mark.parametrize("levels", [256, 5000])
def test_a_job_result_nested_too_deep_fails_the_job_with_204(
    deep_worker: Flask, levels: int
) -> None:
    job_id = add_job(deep_worker, "test.deep_result", {"levels": levels})
    r = push(deep_worker, job_id)
    assert r.status_code == 204
    done = job(deep_worker, job_id)
    assert (done.status, done.reason) == ("failed", "invalid_result")


def test_a_stored_payload_nested_too_deep_fails_the_job_with_204(worker_app: Flask) -> None:
    value: Any = {}
    for _ in range(300):
        value = {"a": value}
    job_id = add_job(worker_app, "demo.echo", value)
    r = push(worker_app, job_id)
    assert r.status_code == 204
    assert job(worker_app, job_id).status == "failed"
