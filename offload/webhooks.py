"""Outbound webhooks: which URLs may be called, Standard Webhooks signing, the send.

Signing follows the Standard Webhooks specification: ``webhook-id`` (stable per
delivery), ``webhook-timestamp`` (Unix seconds, taken at send time so a retry hours
later is still fresh) and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"{id}.{timestamp}.{body}"``, keyed with the bytes of the ``whsec_`` secret.

Hosted, a URL must be https and every address its host resolves to must be public:
not loopback, private, link-local (the metadata server, 169.254.169.254), shared,
reserved or multicast. The check runs at submit and again at send time, and the send
connects to the very address that was checked (the host name goes in ``Host`` and in
TLS SNI), so a DNS answer that changes in between (rebinding) cannot aim it inside.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from offload.errors import ConfigError, OffloadError

__all__ = [
    "MAX_URL_LENGTH",
    "Resolver",
    "SendResult",
    "WebhookUrlError",
    "check_url",
    "parse_secret",
    "public_address",
    "send",
    "sign",
    "signed_headers",
]

MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"

# host, port -> the addresses it resolves to (socket.getaddrinfo's shape, trimmed).
Resolver = Callable[[str, int], list[str]]


class WebhookUrlError(OffloadError):
    """A notify URL that may not be called (bad form, or an internal address)."""


def parse_secret(value: str) -> bytes:
    """The signing key of a ``whsec_<base64>`` secret; ConfigError if malformed."""
    raw = value.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ConfigError("OFFLOAD_WEBHOOK_SECRET must be whsec_ followed by base64") from e
    if len(key) < 16:
        raise ConfigError("OFFLOAD_WEBHOOK_SECRET must hold at least 16 bytes")
    return key


def sign(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one send."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_url(url: str, *, allow_internal: bool) -> SplitResult:
    """The URL's parts if its form is acceptable (https when hosted, a host, no user)."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise WebhookUrlError("contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise WebhookUrlError(f"not a URL: {e}") from None
    schemes = ("https", "http") if allow_internal else ("https",)
    if parts.scheme not in schemes:
        raise WebhookUrlError(
            "must be an https:// URL" if not allow_internal else "must be http(s)"
        )
    if not parts.hostname:
        raise WebhookUrlError("has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("may not carry a user name or password")
    if parts.fragment:
        raise WebhookUrlError("may not have a #fragment")
    if port == 0:
        raise WebhookUrlError("port 0 is not a port")
    return parts


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def public_address(
    parts: SplitResult, *, allow_internal: bool, resolver: Resolver | None = None
) -> str:
    """The address to connect to; every address of the host must be public if hosted."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = (resolver or _system_resolver)(host, port)
    except (OSError, UnicodeError) as e:
        raise WebhookUrlError(f"host {host!r} does not resolve: {e}") from None
    if not addresses:
        raise WebhookUrlError(f"host {host!r} does not resolve")
    if not allow_internal:
        internal = [a for a in addresses if not _is_public(a)]
        if internal:
            raise WebhookUrlError(
                f"host {host!r} resolves to an internal address ({internal[0]}); "
                "only public addresses may receive webhooks"
            )
    return addresses[0]


@dataclass(frozen=True)
class SendResult:
    """What the receiver answered (``status`` None when it could not be reached)."""

    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        """Whether the receiver took it (2xx)."""
        return self.status is not None and 200 <= self.status < 300


def send(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_internal: bool,
    timeout: float,
    resolver: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> SendResult:
    """POST ``body`` to ``url`` at the address just checked; redirects are not followed."""
    parts = check_url(url, allow_internal=allow_internal)
    address = public_address(parts, allow_internal=allow_internal, resolver=resolver)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    try:
        with httpx.Client(
            timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
        ) as client:
            response = client.post(
                target,
                content=body,
                headers={**headers, "Host": host_header},
                extensions=extensions,
            )
    except httpx.HTTPError as e:
        return SendResult(None, f"{type(e).__name__}: {e}"[:300])
    if 200 <= response.status_code < 300:
        return SendResult(response.status_code, None)
    return SendResult(response.status_code, f"answered {response.status_code}")


def signed_headers(
    key: bytes, *, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers of one send, timestamped now."""
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "Offload-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id=msg_id, timestamp=timestamp, body=body),
    }
