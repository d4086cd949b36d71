"""One cache for fetched signing keys (IAP's JWK set for web, Google's certs for the worker).

Keys are fetched from a URL and kept by key id; they are fetched again when older than
``ttl``, or sooner when a token names a key id not seen yet (keys were rotated), but
never more often than ``min_refresh`` seconds, so forged key ids cannot turn every
request into a fetch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from offload.errors import OffloadError

__all__ = ["SigningKeys", "SigningKeysError"]

# After a failed fetch, requests meanwhile are refused at once instead of each waiting
# on the URL's timeout.
FAILURE_BACKOFF_SECONDS = 2.0


class SigningKeysError(OffloadError):
    """The signing keys could not be fetched or read."""


class SigningKeys:
    """Keys by key id, fetched from ``url`` and read by ``parse`` (the decoded JSON in)."""

    def __init__(
        self,
        url: str,
        parse: Callable[[Any], dict[str, Any]],
        *,
        ttl: float,
        min_refresh: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.timeout = timeout
        self._parse = parse
        self._keys: dict[str, Any] = {}
        self._fetched: float | None = None
        self._tried = -float("inf")  # last fetch attempt, failed or not
        self._lock = threading.Lock()

    def key(self, kid: str) -> Any | None:
        """The key called ``kid`` (``None`` if the key set has no such key)."""
        with self._lock:
            self._refresh(wanted=kid in self._keys)
            return self._keys.get(kid)

    def all(self) -> dict[str, Any]:
        """Every current key (for a token that names none)."""
        with self._lock:
            self._refresh(wanted=bool(self._keys))
            return dict(self._keys)

    def _refresh(self, *, wanted: bool) -> None:
        """Fetch when due; a key already held stays good while the URL is unreachable."""
        if self._due(unknown=not wanted):
            try:
                self._fetch()
            except SigningKeysError:
                if not wanted:
                    raise
        elif self._fetched is None:
            raise SigningKeysError(f"signing keys from {self.url} are unavailable (retrying)")

    def _due(self, *, unknown: bool) -> bool:
        now = time.monotonic()
        if now - self._tried < FAILURE_BACKOFF_SECONDS and self._fetched != self._tried:
            return False  # the last attempt failed: do not hold every request on the URL
        if self._fetched is None:
            return True
        age = now - self._fetched
        return age > self.ttl or (unknown and age > self.min_refresh)

    def _fetch(self) -> None:
        self._tried = time.monotonic()
        try:
            response = requests.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as e:
            raise SigningKeysError(f"cannot fetch signing keys from {self.url}: {e}") from e
        try:
            keys = self._parse(body)
        except Exception as e:  # noqa: BLE001 - whatever the parser raises, the set is unusable
            raise SigningKeysError(f"cannot read the signing keys from {self.url}: {e}") from e
        self._keys, self._fetched = keys, self._tried
