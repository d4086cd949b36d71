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
from dataclasses import dataclass
from typing import Any

import jwt

from offload.authn import AuthError, Caller
from offload.errors import ConfigError
from offload.settings import Settings
from offload.signingkeys import SigningKeys, SigningKeysError

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


def _unauthorized(detail: str, challenge: str) -> AuthError:
    return AuthError(401, detail, challenge=challenge)


class NoAuth:
    """Local development: everyone is the admin ``anonymous``."""

    def authenticate(self, caller: Caller) -> Principal:
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

    def authenticate(self, caller: Caller) -> Principal:
        """The key's principal, or a 401."""
        headers = caller.headers
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

    def knows(self, principal: Principal) -> bool:
        """Whether a key of this principal, with this role, is still configured."""
        return any(p == principal for _, p in self._keys)


def _jwk_set(body: Any) -> dict[str, Any]:
    """IAP's JWK set as public keys by key id."""
    return {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(body).keys if k.key_id}


class IapAuth:
    """Identity-Aware Proxy: verify its signed header (ES256, issuer, audience, expiry)."""

    challenge = 'IAP realm="offload"'

    def __init__(self, *, audience: str, certs_url: str, admins: str) -> None:
        if not audience:
            raise ConfigError("OFFLOAD_API_AUTH=iap needs OFFLOAD_IAP_AUDIENCE")
        self.audience = audience
        self._keys = SigningKeys(certs_url, _jwk_set, ttl=600.0)
        self._admins = {a.strip().lower() for a in admins.split(",") if a.strip()}

    def authenticate(self, caller: Caller) -> Principal:
        """The IAP user, or a 401."""
        token = caller.headers.get(IAP_HEADER) or ""
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
        except SigningKeysError as e:
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
