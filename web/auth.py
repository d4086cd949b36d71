"""Who is calling the API: API keys, or Identity-Aware Proxy's signed header.

The model: every job belongs to the principal that submitted it (``key:<name>`` or
``iap:<email>``) and is visible only to it, except to principals with the ``admin``
role, who see and cancel every job. Roles: ``read`` (GET), ``submit`` (GET, POST,
DELETE of its own jobs), ``admin`` (everything). No credentials, or bad ones: 401 with
``WWW-Authenticate``; valid credentials without the role: 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from offload.errors import ConfigError
from offload.problems import ProblemError
from offload.requestctx import HeaderMap
from offload.settings import Settings

__all__ = [
    "ROLES",
    "ApiKeyAuth",
    "IapAuth",
    "NoAuth",
    "Principal",
    "make_api_auth",
]

log = logging.getLogger(__name__)

ROLES = ("read", "submit", "admin")
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_HEADER = "X-Goog-IAP-JWT-Assertion"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: str

    @property
    def admin(self) -> bool:
        """Whether this caller sees every job."""
        return self.role == "admin"

    def may(self, needed: str) -> bool:
        """Whether the role includes ``needed``."""
        return ROLES.index(self.role) >= ROLES.index(needed)


def _unauthorized(detail: str, challenge: str) -> ProblemError:
    return ProblemError(
        401, "Unauthorized", detail, slug="unauthorized", headers={"WWW-Authenticate": challenge}
    )


class NoAuth:
    """Local development: everyone is the admin ``anonymous``."""

    def authenticate(self, headers: HeaderMap) -> Principal:
        """Everyone is let in."""
        return Principal("anonymous", "admin")


class ApiKeyAuth:
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, checked against hashes."""

    challenge = 'Bearer realm="offload"'

    def __init__(self, entries: str) -> None:
        self._keys: list[tuple[bytes, Principal]] = []
        for entry in filter(None, (e.strip() for e in entries.split(","))):
            parts = entry.split(":")
            if len(parts) not in (2, 3) or len(parts[1]) != 64:
                raise ConfigError(
                    "OFFLOAD_API_KEYS entries are name:sha256-hex[:role] "
                    f"(entry {len(self._keys) + 1} is not)"
                )
            role = parts[2] if len(parts) == 3 else "submit"
            if role not in ROLES:
                raise ConfigError(f"OFFLOAD_API_KEYS: unknown role {role!r} for key {parts[0]!r}")
            self._keys.append((bytes.fromhex(parts[1]), Principal(f"key:{parts[0]}", role)))
        if not self._keys:
            raise ConfigError("OFFLOAD_API_AUTH=api_key needs at least one OFFLOAD_API_KEYS entry")

    def authenticate(self, headers: HeaderMap) -> Principal:
        """The key's principal, or a 401."""
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else (headers.get("X-API-Key") or "")
        if not key:
            raise _unauthorized("send an API key: Authorization: Bearer <key>", self.challenge)
        digest = hashlib.sha256(key.encode()).digest()
        found: Principal | None = None
        for stored, principal in self._keys:
            # Compare with every key, in constant time, so timing tells nothing.
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise _unauthorized(
                "the API key is not valid (revoked or mistyped)",
                self.challenge + ', error="invalid_token"',
            )
        return found


class _JwksCache:
    """IAP's public keys (JWK set), refreshed every few minutes or on an unknown key id."""

    def __init__(self, url: str, ttl: float = 600.0) -> None:
        self.url = url
        self.ttl = ttl
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def key(self, kid: str) -> Any:
        with self._lock:
            stale = time.monotonic() - self._fetched > self.ttl
            if stale or (kid not in self._keys and time.monotonic() - self._fetched > 30):
                response = requests.get(self.url, timeout=5)
                response.raise_for_status()
                jwks = jwt.PyJWKSet.from_dict(response.json())
                self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
                self._fetched = time.monotonic()
            return self._keys.get(kid)


class IapAuth:
    """Identity-Aware Proxy: verify its signed header (ES256, issuer, audience, expiry)."""

    challenge = 'IAP realm="offload"'

    def __init__(self, *, audience: str, certs_url: str, admins: str) -> None:
        if not audience:
            raise ConfigError("OFFLOAD_API_AUTH=iap needs OFFLOAD_IAP_AUDIENCE")
        self.audience = audience
        self._keys = _JwksCache(certs_url)
        self._admins = {a.strip().lower() for a in admins.split(",") if a.strip()}

    def authenticate(self, headers: HeaderMap) -> Principal:
        """The IAP user, or a 401."""
        token = headers.get(IAP_HEADER) or ""
        if not token:
            raise _unauthorized("this API is served behind Identity-Aware Proxy", self.challenge)
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
            key = self._keys.key(str(kid))
            if key is None:
                raise jwt.InvalidTokenError("unknown signing key")
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                audience=self.audience,
                issuer=IAP_ISSUER,
                leeway=10,
                options={"require": ["exp", "iat", "aud", "iss", "email"]},
            )
        except jwt.InvalidTokenError as e:
            log.warning("IAP assertion refused: %s", e)
            raise _unauthorized("the IAP assertion is not valid", self.challenge) from None
        except requests.RequestException as e:
            log.error("cannot fetch IAP signing keys: %s", e)
            raise _unauthorized("the IAP assertion cannot be checked now", self.challenge) from None
        email = str(claims["email"]).lower()
        return Principal(f"iap:{email}", "admin" if email in self._admins else "submit")


ApiAuth = NoAuth | ApiKeyAuth | IapAuth


def make_api_auth(settings: Settings) -> ApiAuth:
    """The authenticator ``OFFLOAD_API_AUTH`` names; refuses ``none`` when hosted."""
    mode = settings.api_auth
    if mode == "api_key":
        return ApiKeyAuth(settings.api_keys)
    if mode == "iap":
        return IapAuth(
            audience=settings.iap_audience,
            certs_url=settings.iap_certs_url,
            admins=settings.iap_admins,
        )
    if mode == "none":
        if settings.hosted:
            raise ConfigError(
                "OFFLOAD_API_AUTH=none is for local use; on App Engine or Cloud Run "
                "set api_key or iap"
            )
        log.warning("API authentication is off (OFFLOAD_API_AUTH=none): local use only")
        return NoAuth()
    raise ConfigError(f"OFFLOAD_API_AUTH must be api_key, iap or none (got {mode!r})")
