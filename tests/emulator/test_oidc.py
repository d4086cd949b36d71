"""OIDC tokens: verified by google-auth against the emulator's own certs."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import google.auth.transport.requests
import pytest
import requests
from google.auth import exceptions as auth_exceptions
from google.cloud import tasks_v2
from google.oauth2 import id_token

from tests.emulator.conftest import Emulator, Handler

SA = "tasks-invoker@offload-local.iam.gserviceaccount.com"


def verify(emulator: Emulator, token: str, audience: str) -> Mapping[str, Any]:
    with requests.Session() as session:
        claims: Mapping[str, Any] = id_token.verify_token(
            token,
            google.auth.transport.requests.Request(session),
            audience=audience,
            certs_url=f"{emulator.http}/oauth2/v1/certs",
        )
    return claims


def bearer(handler: Handler, path: str) -> str:
    auth = handler.wait(path, 1)[0].headers["authorization"]
    assert auth.startswith("Bearer ")
    return auth.removeprefix("Bearer ")


def test_oidc_token_verifies_with_google_auth_and_has_googles_claims(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    path = handler.path()
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=handler.url + path,
                headers={"Authorization": "Bearer forged"},
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=SA, audience="https://worker.example"
                ),
            )
        ),
    )
    token = bearer(handler, path)
    claims = verify(emulator, token, "https://worker.example")
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == "https://worker.example"
    assert claims["email"] == SA
    assert claims["email_verified"] is True
    now = time.time()
    assert int(claims["iat"]) <= now + 1
    assert 0 < int(claims["exp"]) - now <= 3600
    with pytest.raises(ValueError):
        verify(emulator, token, "https://someone-else.example")


def test_oidc_audience_defaults_to_the_url(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    path = handler.path()
    url = handler.url + path
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=url, oidc_token=tasks_v2.OidcToken(service_account_email=SA)
            )
        ),
    )
    assert verify(emulator, bearer(handler, path), url)["aud"] == url


def test_a_token_signed_by_another_key_does_not_verify(
    emulator: Emulator, start_emulator: Callable[..., Emulator], handler: Handler
) -> None:
    other = start_emulator()
    queue = "projects/emu-test/locations/us-central1/queues/other-key"
    other.client.create_queue(
        parent="projects/emu-test/locations/us-central1", queue=tasks_v2.Queue(name=queue)
    )
    path = handler.path()
    other.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=handler.url + path,
                oidc_token=tasks_v2.OidcToken(service_account_email=SA, audience="aud"),
            )
        ),
    )
    token = bearer(handler, path)
    verify(other, token, "aud")
    with pytest.raises((ValueError, auth_exceptions.GoogleAuthError)):
        verify(emulator, token, "aud")


def test_certs_endpoint_has_googles_v1_shape(emulator: Emulator) -> None:
    with urllib.request.urlopen(f"{emulator.http}/oauth2/v1/certs", timeout=5) as r:
        assert r.headers["Content-Type"] == "application/json"
        certs = json.loads(r.read())
    assert len(certs) == 1
    ((kid, pem),) = certs.items()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert len(kid) == 40
