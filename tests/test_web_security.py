"""Who may call the API: API keys, IAP, roles, per-owner visibility, headers, CORS."""

from __future__ import annotations

import http.server as httpserver
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from offload.errors import ConfigError
from offload.keys import hash_key
from tests.conftest import Stack, app_config
from web import create_app

ALICE, BOB, ADMIN, READER, REVOKED = "key-alice", "key-bob", "key-admin", "key-reader", "key-old"


def keyed_app(tmp: Path, emulator: Stack, **extra: Any) -> Flask:
    entries = ",".join(
        [
            f"alice:{hash_key(ALICE)}",
            f"bob:{hash_key(BOB)}:submit",
            f"ops:{hash_key(ADMIN)}:admin",
            f"dash:{hash_key(READER)}:read",
        ]
    )
    return create_app(
        app_config(
            tmp,
            TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator.emulator_port}",
            API_AUTH="api_key",
            API_KEYS=entries,
            **extra,
        )
    )


@pytest.fixture
def app(tmp_path: Path, emulator: Stack) -> Iterator[Flask]:
    app = keyed_app(tmp_path, emulator)
    yield app
    app.extensions["offload.store"].dispose()


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(http: FlaskClient, key: str, **body: Any) -> Any:
    payload = {"type": "demo.echo", "payload": {}, "delay_seconds": 600, **body}
    return http.post("/jobs", json=payload, headers=auth(key))


def test_no_key_is_401_with_a_challenge(http: FlaskClient) -> None:
    r = http.post("/jobs", json={"type": "demo.echo"})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.headers["Content-Type"] == "application/problem+json"
    assert http.get("/jobs").status_code == 401


@pytest.mark.parametrize("key", ["wrong", REVOKED, ALICE + "x", ""])
def test_wrong_or_revoked_keys_are_401(http: FlaskClient, key: str) -> None:
    r = http.get("/jobs", headers=auth(key))
    assert r.status_code == 401


def test_the_x_api_key_header_works_too(http: FlaskClient) -> None:
    assert http.get("/jobs", headers={"X-API-Key": ALICE}).status_code == 200


def test_a_read_only_key_may_read_but_not_submit_or_cancel(http: FlaskClient) -> None:
    job = submit(http, ALICE).get_json()
    assert http.get("/jobs", headers=auth(READER)).status_code == 200
    r = submit(http, READER)
    assert r.status_code == 403 and r.headers["Content-Type"] == "application/problem+json"
    assert http.delete(f"/jobs/{job['id']}", headers=auth(READER)).status_code == 403


def test_jobs_are_visible_only_to_their_owner_and_admins(http: FlaskClient) -> None:
    job = submit(http, ALICE).get_json()
    assert http.get(f"/jobs/{job['id']}", headers=auth(ALICE)).status_code == 200
    assert http.get(f"/jobs/{job['id']}", headers=auth(BOB)).status_code == 404
    assert http.delete(f"/jobs/{job['id']}", headers=auth(BOB)).status_code == 404
    # Waiting on it is seeing it: neither its long-poll nor its event stream answers BOB.
    assert http.get(f"/jobs/{job['id']}?wait=1", headers=auth(BOB)).status_code == 404
    assert http.get(f"/jobs/{job['id']}/events", headers=auth(BOB)).status_code == 404
    assert job["id"] not in [j["id"] for j in http.get("/jobs", headers=auth(BOB)).json["jobs"]]
    assert job["id"] in [j["id"] for j in http.get("/jobs", headers=auth(ADMIN)).json["jobs"]]
    assert http.get(f"/jobs/{job['id']}", headers=auth(ADMIN)).status_code == 200
    assert http.delete(f"/jobs/{job['id']}", headers=auth(ALICE)).status_code == 204


def test_idempotency_keys_are_per_client(http: FlaskClient) -> None:
    key = {"Idempotency-Key": "same-key"}
    a = http.post(
        "/jobs", json={"type": "demo.echo", "delay_seconds": 600}, headers={**auth(ALICE), **key}
    )
    b = http.post(
        "/jobs",
        json={"type": "demo.echo", "payload": {"x": 1}, "delay_seconds": 600},
        headers={**auth(BOB), **key},
    )
    assert a.status_code == 202 and b.status_code == 202
    assert a.get_json()["id"] != b.get_json()["id"]


def test_health_and_openapi_are_public(http: FlaskClient) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/openapi.json").status_code == 200


def test_security_headers_and_no_store_on_every_answer(http: FlaskClient) -> None:
    for r in (http.get("/healthz"), http.get("/jobs"), submit(http, ALICE)):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert r.headers["Cache-Control"] == "no-store"
        assert "Access-Control-Allow-Origin" not in r.headers  # CORS off by default


def test_cors_only_for_configured_origins(tmp_path: Path, emulator: Stack) -> None:
    app = keyed_app(tmp_path, emulator, CORS_ORIGINS="https://app.example.com")
    http = app.test_client()
    pre = http.options(
        "/jobs",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    other = http.get("/jobs", headers={"Origin": "https://evil.example.com", **auth(ALICE)})
    assert "Access-Control-Allow-Origin" not in other.headers
    ok = http.get("/jobs", headers={"Origin": "https://app.example.com", **auth(ALICE)})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_api_keys_never_reach_the_log(http: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    submit(http, ALICE)
    http.get("/jobs", headers=auth("not-a-key-but-secret"))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert ALICE not in text and "not-a-key-but-secret" not in text


def test_resubmit_makes_a_new_job_from_a_failed_one(http: FlaskClient, app: Flask) -> None:
    old = submit(http, ALICE).get_json()
    assert http.post(f"/jobs/{old['id']}/resubmit", headers=auth(ALICE)).status_code == 409
    http.delete(f"/jobs/{old['id']}", headers=auth(ALICE))  # now cancelled
    r = http.post(f"/jobs/{old['id']}/resubmit", headers=auth(ALICE))
    assert r.status_code == 202
    new = r.get_json()
    assert new["id"] != old["id"] and new["resubmit_of"] == old["id"]
    assert new["status"] == "queued" and new["payload"] == old["payload"]
    assert http.post(f"/jobs/{old['id']}/resubmit", headers=auth(BOB)).status_code == 404
    http.delete(f"/jobs/{new['id']}", headers=auth(ALICE))


def test_payloads_over_the_limit_are_413(tmp_path: Path, emulator: Stack) -> None:
    app = keyed_app(tmp_path, emulator, MAX_PAYLOAD_BYTES=100)
    r = submit(app.test_client(), ALICE, payload={"pad": "x" * 200})
    assert r.status_code == 413 and r.headers["Content-Type"] == "application/problem+json"


def test_bad_key_configuration_refuses_to_start(tmp_path: Path, emulator: Stack) -> None:
    for entries in ("", "alice", "alice:abc", f"alice:{hash_key('k')}:root"):
        with pytest.raises(ConfigError):
            create_app(app_config(tmp_path, API_AUTH="api_key", API_KEYS=entries))


def test_auth_none_is_refused_when_hosted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local use"):
        create_app(app_config(tmp_path, API_AUTH="none", HOSTED=True))


# -- Identity-Aware Proxy ---------------------------------------------------------------

IAP_AUD = "/projects/123/apps/offload-test"


@pytest.fixture(scope="module")
def iap_keys() -> Iterator[tuple[ec.EllipticCurvePrivateKey, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "iap-1", "alg": "ES256", "use": "sig"}]}).encode()

    class Handler(httpserver.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/iap/jwk"
    server.shutdown()
    server.server_close()


def iap_token(key: ec.EllipticCurvePrivateKey, email: str, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": "https://cloud.google.com/iap",
        "aud": IAP_AUD,
        "email": email,
        "sub": "accounts.google.com:1",
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": "iap-1"})


def test_iap_assertions_are_verified(
    tmp_path: Path, emulator: Stack, iap_keys: tuple[ec.EllipticCurvePrivateKey, str]
) -> None:
    key, url = iap_keys
    app = create_app(
        app_config(
            tmp_path,
            TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator.emulator_port}",
            API_AUTH="iap",
            IAP_AUDIENCE=IAP_AUD,
            IAP_CERTS_URL=url,
            IAP_ADMINS="boss@example.com",
        )
    )
    http = app.test_client()
    header = "X-Goog-IAP-JWT-Assertion"
    assert http.get("/jobs").status_code == 401
    assert http.get("/jobs", headers={header: iap_token(key, "a@example.com")}).status_code == 200
    forged = iap_token(ec.generate_private_key(ec.SECP256R1()), "a@example.com")
    assert http.get("/jobs", headers={header: forged}).status_code == 401
    other_aud = iap_token(key, "a@example.com", aud="/projects/9/apps/other")
    assert http.get("/jobs", headers={header: other_aud}).status_code == 401
    expired = iap_token(
        key, "a@example.com", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
    )
    assert http.get("/jobs", headers={header: expired}).status_code == 401
    job = http.post(
        "/jobs",
        json={"type": "demo.echo", "delay_seconds": 600},
        headers={header: iap_token(key, "a@example.com")},
    ).get_json()
    assert job["id"]
    seen_by_other = http.get(
        f"/jobs/{job['id']}", headers={header: iap_token(key, "b@example.com")}
    )
    assert seen_by_other.status_code == 404
    seen_by_admin = http.get(
        f"/jobs/{job['id']}", headers={header: iap_token(key, "boss@example.com")}
    )
    assert seen_by_admin.status_code == 200
