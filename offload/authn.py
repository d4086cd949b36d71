"""One shape for every authenticator of web and worker: a caller in, an identity or a refusal out.

``authenticate(caller)`` returns what the service needs to know about the caller (web: a
:class:`~web.auth.Principal`; worker: the proven push target) or raises
:class:`AuthError`, a 401/403 problem whose ``reason`` goes to the log and whose
``detail`` is safe to answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from flask import Request

from offload.problems import ProblemError
from offload.requestctx import HeaderMap

__all__ = ["AuthError", "Authenticator", "Caller", "caller_of", "is_loopback"]

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Caller:
    """What an authenticator may look at: the request's headers and the peer's address."""

    headers: HeaderMap
    remote_addr: str | None = None


class AuthError(ProblemError):
    """The caller is not let in: 401 (no or bad credentials) or 403 (not allowed)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        reason: str | None = None,
        challenge: str | None = None,
        slug: str | None = None,
    ) -> None:
        headers: Mapping[str, str] = {"WWW-Authenticate": challenge} if challenge else {}
        title = "Unauthorized" if status == 401 else "Forbidden"
        default_slug = "unauthorized" if status == 401 else "forbidden"
        super().__init__(status, title, detail, slug=slug or default_slug, headers=headers)
        self.reason = reason or detail


class Authenticator(Protocol[T_co]):
    """Anything that can tell who a caller is (or refuse it)."""

    def authenticate(self, caller: Caller) -> T_co:
        """The caller's identity; raises :class:`AuthError` when it is not proven."""
        ...


def caller_of(request: Request) -> Caller:
    """The :class:`Caller` of a Flask request (the TCP peer, never a forwarded header)."""
    return Caller(request.headers, request.remote_addr)


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` is 127.0.0.0/8 or ::1 (also as an IPv4-mapped IPv6 address)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
