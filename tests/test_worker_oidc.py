"""OIDC proof of a push: verified with google-auth against a certs URL, forgeries refused."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.auth import crypt
from google.auth import jwt as gjwt

from emulator.oidc import Signer
from offload.authn import AuthError, Caller
from worker.auth import OidcAuthenticator

AUDIENCE = "https://worker.example.com"
ACCOUNT = "tasks@offload-test.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="module")
def certs_url(signer: Signer) -> Iterator[str]:
    body = signer.certs_json()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v1/certs"
    server.shutdown()
    server.server_close()


@pytest.fixture
def auth(certs_url: str) -> OidcAuthenticator:
    return OidcAuthenticator(audience=AUDIENCE, service_account=ACCOUNT, certs_url=certs_url)


def forge(signer: Signer, **overrides: Any) -> str:
    """A token signed by ``signer``'s key with claims we choose."""
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": ACCOUNT,
        "email_verified": True,
        "sub": "1",
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    key = crypt.RSASigner.from_string(signer.private_pem().decode(), key_id=signer.kid)
    token: bytes = gjwt.encode(key, claims)  # type: ignore[no-untyped-call]
    return token.decode()


@dataclass(frozen=True)
class Checked:
    status: int  # 0: trusted
    reason: str
    target: str


def check(auth: OidcAuthenticator, headers: dict[str, str]) -> Checked:
    """The authenticator's verdict on ``headers``, refusals included."""
    try:
        origin = auth.authenticate(Caller(headers, "10.1.2.3"))
    except AuthError as e:
        return Checked(e.status, e.reason, "")
    return Checked(0, origin.reason, origin.target)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_from_the_service_account_for_our_audience_is_trusted(
    auth: OidcAuthenticator, signer: Signer
) -> None:
    result = check(auth, bearer(signer.token(audience=AUDIENCE, email=ACCOUNT)))
    assert result.status == 0 and result.target == "http"


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"aud": "https://elsewhere.example.com"}, 401),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, 401),
        ({"email": "attacker@evil.iam.gserviceaccount.com"}, 403),
        ({"email_verified": False}, 403),
        ({"iss": "https://evil.example.com"}, 403),
    ],
)
def test_forged_or_misdirected_tokens_are_refused(
    auth: OidcAuthenticator, signer: Signer, claims: dict[str, Any], status: int
) -> None:
    result = check(auth, bearer(forge(signer, **claims)))
    assert result.status == status, result.reason


def test_a_token_signed_by_another_key_is_refused(auth: OidcAuthenticator) -> None:
    assert check(auth, bearer(forge(Signer()))).status == 401


def test_a_tampered_token_is_refused(auth: OidcAuthenticator, signer: Signer) -> None:
    header, payload, signature = forge(signer).split(".")
    other = forge(signer, email="attacker@evil.iam.gserviceaccount.com").split(".")[1]
    assert check(auth, bearer(f"{header}.{other}.{signature}")).status == 401
    assert payload != other


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not.a.jwt"},
        {"X-AppEngine-QueueName": "q", "X-AppEngine-TaskName": "t"},
    ],
)
def test_pushes_without_a_valid_bearer_token_are_401(
    auth: OidcAuthenticator, headers: dict[str, str]
) -> None:
    assert check(auth, headers).status == 401


def test_the_reason_never_contains_the_token(auth: OidcAuthenticator, signer: Signer) -> None:
    token = forge(signer, aud="https://elsewhere.example.com")
    assert token not in check(auth, bearer(token)).reason
