"""Proving that a push came from Cloud Tasks, before any work is done (fail closed)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
from google.auth import exceptions as gauth_exceptions
from google.auth import jwt

from offload.authn import AuthError, Caller, is_loopback
from offload.errors import ConfigError
from offload.platform import APP_ENGINE, CLOUD_RUN, LOCAL, OTHER_HOST
from offload.settings import Settings
from offload.signingkeys import SigningKeys, SigningKeysError

__all__ = ["PushAuthenticator", "PushOrigin", "make_authenticator"]

log = logging.getLogger(__name__)

GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})


_CHALLENGE = 'Bearer realm="offload-worker"'
_PUSHES_ONLY = "this endpoint only accepts Cloud Tasks pushes"


@dataclass(frozen=True)
class PushOrigin:
    """A proven push: its target kind decides how a retry is asked for."""

    target: str  # "appengine" or "http"
    reason: str


def _refused(status: int, reason: str) -> AuthError:
    """A refused push: the reason is logged, the client only learns it is not a push."""
    challenge = _CHALLENGE if status == 401 else None
    return AuthError(status, _PUSHES_ONLY, reason=reason, challenge=challenge)


class PushAuthenticator:
    """Base: decide whether a request proves it came from Cloud Tasks."""

    target = "appengine"

    def authenticate(self, caller: Caller) -> PushOrigin:
        """The push's origin; raises :class:`AuthError` when it is not proven."""
        raise NotImplementedError


class AppEngineAuthenticator(PushAuthenticator):
    """App Engine strips ``X-AppEngine-*`` task headers from outside requests.

    So on App Engine their presence proves the caller, and nowhere else: locally the
    emulator is believed only over loopback (the one caller there), and on any other
    host this authenticator refuses to be built (:func:`make_authenticator`).
    """

    target = "appengine"

    def __init__(self, *, platform: str, queues: frozenset[str]) -> None:
        if platform not in (APP_ENGINE, LOCAL):
            raise ConfigError(_APPENGINE_ELSEWHERE.format(where=_PLACES.get(platform, platform)))
        self.platform = platform
        self.queues = queues

    def vouches(self, caller: Caller) -> bool:
        """Whether App Engine's own headers on this request can be believed."""
        return self.platform == APP_ENGINE or is_loopback(caller.remote_addr)

    def authenticate(self, caller: Caller) -> PushOrigin:
        """Trust a push with App Engine's task headers, from a configured queue."""
        if not self.vouches(caller):
            # Never on App Engine: locally, someone other than the emulator on loopback.
            raise _refused(403, f"App Engine task headers from {caller.remote_addr}, not loopback")
        headers = caller.headers
        queue = headers.get("X-AppEngine-QueueName") or ""
        if not queue or not headers.get("X-AppEngine-TaskName"):
            raise _refused(403, "missing App Engine task headers")
        if queue not in self.queues:
            raise _refused(403, f"push from a queue that is not configured ({queue[:100]!r})")
        return PushOrigin(self.target, "app engine task headers")


_PLACES = {CLOUD_RUN: "Cloud Run (K_SERVICE is set)", OTHER_HOST: "this host"}
_APPENGINE_ELSEWHERE = (
    "OFFLOAD_WORKER_AUTH=appengine trusts X-AppEngine-* headers, which only App Engine "
    "strips from outside requests; on {where} anyone could forge them: set "
    "OFFLOAD_WORKER_AUTH=oidc (with OFFLOAD_TASK_TARGET=http)"
)


def configured_queues(settings: Settings) -> frozenset[str]:
    """The queues this worker accepts pushes from (today one: ``OFFLOAD_QUEUE``)."""
    return frozenset(q.strip() for q in settings.queue.split(",") if q.strip())


def _certs(body: Any) -> dict[str, Any]:
    """Google's certs document: key id -> PEM certificate."""
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise ValueError("the certs endpoint did not answer a JSON object of PEM strings")
    return {str(k): v for k, v in body.items()}


class OidcAuthenticator(PushAuthenticator):
    """Verify the push's ``Authorization: Bearer`` ID token with google-auth.

    Signature (keys from ``certs_url``), expiry, issuer, audience (always given) and the
    service account's ``email`` with ``email_verified``.
    """

    target = "http"

    def __init__(self, *, audience: str, service_account: str, certs_url: str) -> None:
        self.audience = audience
        self.service_account = service_account
        self._certs = SigningKeys(certs_url, _certs, ttl=300.0)

    def _signing_certs(self, token: str) -> Mapping[str, Any]:
        """The certificate the token names (all of them for a token naming none)."""
        try:
            kid = pyjwt.get_unverified_header(token).get("kid")
        except pyjwt.PyJWTError as e:
            raise ValueError(f"not a JWT: {e}") from None
        if not kid:
            return self._certs.all()
        cert = self._certs.key(str(kid))
        if cert is None:
            raise ValueError(f"no signing key {str(kid)[:40]!r}")
        return {str(kid): cert}

    def authenticate(self, caller: Caller) -> PushOrigin:
        """Trust the push only with a valid token from the expected service account."""
        scheme, _, token = caller.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _refused(401, "no bearer token")
        try:
            claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token,
                certs=self._signing_certs(token),
                audience=self.audience,
                clock_skew_in_seconds=10,
            )
        except (ValueError, gauth_exceptions.GoogleAuthError) as e:
            # The message names what failed (expiry, audience...), never the token.
            raise _refused(401, f"token rejected: {type(e).__name__}: {e}"[:300]) from None
        except SigningKeysError as e:
            log.error("cannot fetch token signing keys: %s", e)
            raise _refused(401, "signing keys unavailable") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _refused(403, "token from an unexpected issuer")
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise _refused(403, "token of an unexpected service account")
        return PushOrigin(self.target, "oidc token verified")


def make_authenticator(
    settings: Settings, queues: frozenset[str] | None = None
) -> PushAuthenticator:
    """The authenticator the configuration asks for; refuses an incomplete one.

    ``queues``: those pushes may come from (default: OFFLOAD_QUEUE's); the worker passes
    its job types' queues too (worker/queues.py).
    """
    mode = settings.worker_auth
    if mode == "appengine":
        return AppEngineAuthenticator(
            platform=settings.platform, queues=queues or configured_queues(settings)
        )
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
