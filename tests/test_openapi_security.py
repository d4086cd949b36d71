"""The OpenAPI document describes the security the running service enforces, in every mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from offload.keys import hash_key
from tests.conftest import app_config
from web import create_app

MODES: dict[str, dict[str, Any]] = {
    "none": {},
    "api_key": {"API_KEYS": f"k:{hash_key('secret-key')}:admin"},
    "iap": {"IAP_AUDIENCE": "/projects/1/apps/offload", "IAP_CERTS_URL": "http://127.0.0.1:9/"},
}


@pytest.fixture(params=list(MODES))
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    mode = request.param
    application = create_app(
        app_config(tmp_path, API_AUTH=mode, TASKS_EMULATOR_HOST="127.0.0.1:9", **MODES[mode])
    )
    yield application
    application.extensions["offload.tasks"].close()
    application.extensions["offload.store"].dispose()


def test_the_document_asks_for_exactly_the_credentials_the_service_checks(app: Flask) -> None:
    spec = app.test_client().get("/openapi.json").get_json()
    mode = app.config["API_AUTH"]
    schemes = spec.get("components", {}).get("securitySchemes", {})
    headers = {s.get("name") or "Authorization" for s in schemes.values()}
    assert (
        headers
        == {
            "none": set(),
            "api_key": {"Authorization", "X-API-Key"},
            "iap": {"X-Goog-IAP-JWT-Assertion"},
        }[mode]
    )
    if mode == "none":
        assert "security" not in spec
    else:
        assert spec["security"] == [{name: []} for name in schemes]
    # Without credentials: a protected route answers 401 exactly when the document says so.
    answer = app.test_client().get("/jobs")
    documented = spec["paths"]["/jobs"]["get"]["responses"]
    assert answer.status_code == (200 if mode == "none" else 401)
    assert ("401" in documented) is (mode != "none")
    # Public routes are public in every mode.
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_the_document_names_every_event_kind_and_every_webhook_type(app: Flask) -> None:
    from offload.store.events import KINDS, WEBHOOK_EVENTS

    spec = app.test_client().get("/openapi.json").get_json()
    event = spec["paths"]["/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert set(event["text/event-stream"]["schema"]["properties"]["event"]["enum"]) == set(KINDS)
    body = spec["webhooks"]["jobFinished"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]["type"]["enum"]) == set(WEBHOOK_EVENTS.values())
