"""Proving that a push came from Cloud Tasks, before any work is done (fail closed)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from google.auth import exceptions as gauth_exceptions
from google.auth import jwt

from offload.errors import ConfigError
from offload.requestctx import HeaderMap
from offload.settings import Settings

__all__ = ["AuthResult", "PushAuthenticator", "make_authenticator"]

log = logging.getLogger(__name__)

GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})


@dataclass(frozen=True)
class AuthResult:
    """``status`` is 0 when the push is trusted, else the 401/403 to answer."""

    status: int
    reason: str
    target: str  # "appengine" or "http": decides how a retry is asked for


class PushAuthenticator:
    """Base: decide whether a request's headers prove it came from Cloud Tasks."""

    target = "appengine"

    def check(self, headers: HeaderMap) -> AuthResult:
        """Trust or refuse the push described by ``headers``."""
        raise NotImplementedError


class AppEngineAuthenticator(PushAuthenticator):
    """App Engine strips ``X-AppEngine-*`` task headers from outside requests.

    So on App Engine their presence proves the caller. Only safe where the platform
    strips them (App Engine, or the loopback-only local set-up).
    """

    target = "appengine"

    def check(self, headers: HeaderMap) -> AuthResult:
        """Trust the push if it carries App Engine's queue and task name headers."""
        if headers.get("X-AppEngine-QueueName") and headers.get("X-AppEngine-TaskName"):
            return AuthResult(0, "app engine task headers", self.target)
        return AuthResult(403, "missing App Engine task headers", self.target)


class _CertCache:
    """Google's (or the emulator's) signing certificates, refreshed at most once a minute."""

    def __init__(self, url: str, ttl: float = 300.0) -> None:
        self.url = url
        self.ttl = ttl
        self._certs: dict[str, str] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def get(self, *, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            age = time.monotonic() - self._fetched
            if self._certs and age < self.ttl and not (refresh and age > 60):
                return self._certs
            response = requests.get(self.url, timeout=5)
            response.raise_for_status()
            certs = response.json()
            if not isinstance(certs, dict):
                raise ValueError("certs endpoint did not answer a JSON object")
            self._certs, self._fetched = certs, time.monotonic()
            return self._certs


class OidcAuthenticator(PushAuthenticator):
    """Verify the push's ``Authorization: Bearer`` ID token with google-auth.

    Signature (keys from ``certs_url``), expiry, issuer, audience (always given) and the
    service account's ``email`` with ``email_verified``.
    """

    target = "http"

    def __init__(self, *, audience: str, service_account: str, certs_url: str) -> None:
        self.audience = audience
        self.service_account = service_account
        self._certs = _CertCache(certs_url)

    def _decode(self, token: str, refresh: bool) -> Mapping[str, Any]:
        claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
            token,
            certs=self._certs.get(refresh=refresh),
            audience=self.audience,
            clock_skew_in_seconds=10,
        )
        return claims

    def check(self, headers: HeaderMap) -> AuthResult:
        """Trust the push only with a valid token from the expected service account."""
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return AuthResult(401, "no bearer token", self.target)
        try:
            try:
                claims = self._decode(token, refresh=False)
            except ValueError as e:
                if "Certificate for key id" not in str(e):
                    raise
                claims = self._decode(token, refresh=True)  # keys rotated
        except (ValueError, gauth_exceptions.GoogleAuthError) as e:
            # The message names what failed (expiry, audience...), never the token.
            return AuthResult(401, f"token rejected: {type(e).__name__}: {e}"[:300], self.target)
        except requests.RequestException as e:
            log.error("cannot fetch token signing keys: %s", e)
            return AuthResult(401, "signing keys unavailable", self.target)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            return AuthResult(403, "token from an unexpected issuer", self.target)
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            return AuthResult(403, "token of an unexpected service account", self.target)
        return AuthResult(0, "oidc token verified", self.target)


def make_authenticator(settings: Settings) -> PushAuthenticator:
    """The authenticator the configuration asks for; refuses an incomplete one."""
    mode = settings.worker_auth
    if mode == "appengine":
        return AppEngineAuthenticator()
    if mode == "oidc":
        audience = settings.oidc_audience or settings.worker_url
        account = settings.task_service_account
        if not audience:
            raise ConfigError("OFFLOAD_WORKER_AUTH=oidc needs OFFLOAD_OIDC_AUDIENCE")
        if not account:
            raise ConfigError("OFFLOAD_WORKER_AUTH=oidc needs OFFLOAD_TASK_SERVICE_ACCOUNT")
        return OidcAuthenticator(
            audience=audience, service_account=account, certs_url=settings.oidc_certs_url
        )
    raise ConfigError(
        f"OFFLOAD_WORKER_AUTH must be 'appengine' or 'oidc' (got {mode!r}): "
        "the worker refuses to trust pushes it cannot authenticate"
    )
