"""A small asyncio HTTP/1.1 client with keep-alive connections, for dispatching tasks.

``requests`` with a thread per dispatch cannot keep up with thousands of dispatches a
second; this reads just what a dispatch needs (status, headers, a body to discard).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

_MAX_HEAD = 1 << 20
_NO_BODY_STATUS = frozenset({204, 304})


class HttpClientError(Exception):
    """The target could not be reached or answered something that is not HTTP."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: connection key and request line pieces."""

    scheme: str
    host: str
    port: int
    path: str
    host_header: str


@lru_cache(maxsize=4096)
def parse_url(url: str) -> Target:
    """Split an http(s) URL into what a request needs (cached: tasks repeat URLs)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpClientError(f"unsupported URL {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname
    host_header = host if port == default else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default else f"[{host}]:{port}"
    return Target(parts.scheme, host, port, path, host_header)


@dataclass(slots=True)
class Response:
    """Status and headers (lower-cased names) of an answer."""

    status: int
    headers: dict[str, str]


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    """Keep-alive connection pool per (scheme, host, port); one request per connection at a time."""

    def __init__(self, max_idle_per_host: int = 2048) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._max_idle = max_idle_per_host
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self, method: str, target: Target, headers: list[tuple[str, str]], body: bytes
    ) -> Response:
        """Send one request and read the whole answer; the caller bounds the time."""
        head = _encode_head(method, target, headers, body)
        key = (target.scheme, target.host, target.port)
        pool = self._idle.setdefault(key, [])
        while pool:
            conn = pool.pop()
            if conn[1].is_closing() or conn[0].at_eof():
                conn[1].close()
                continue
            try:
                return await self._exchange(conn, key, method, head, body)
            except _StaleConnectionError:
                continue  # the server closed an idle connection before we wrote; take another
        conn = await self._connect(target)
        try:
            return await self._exchange(conn, key, method, head, body)
        except _StaleConnectionError as e:
            raise HttpClientError("connection closed before any answer") from e

    async def _connect(self, target: Target) -> _Conn:
        ctx: ssl.SSLContext | None = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            return await asyncio.open_connection(target.host, target.port, ssl=ctx, limit=_MAX_HEAD)
        except OSError as e:
            raise HttpClientError(f"cannot connect to {target.host}:{target.port}: {e}") from e

    async def _exchange(
        self, conn: _Conn, key: tuple[str, str, int], method: str, head: bytes, body: bytes
    ) -> Response:
        reader, writer = conn
        keep = False
        got_bytes = False
        try:
            writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                writer.write(body)
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if not e.partial:
                    raise _StaleConnectionError from e
                raise HttpClientError("truncated response head") from e
            got_bytes = True
            status, headers, version = _parse_head(raw)
            while 100 <= status < 200:  # 100 Continue and friends: the real answer follows
                raw = await reader.readuntil(b"\r\n\r\n")
                status, headers, version = _parse_head(raw)
            reusable = _read_body_then_keep(status, headers, version, method)
            if reusable is None:
                await _drain_to_eof(reader)
            else:
                await _read_body(reader, headers)
                keep = reusable
            return Response(status, headers)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as e:
            keep = False
            if not got_bytes and isinstance(e, ConnectionError):
                raise _StaleConnectionError from e
            raise HttpClientError(f"connection failed: {e!r}") from e
        finally:
            # A cancelled (deadline passed) or failed exchange leaves the connection in
            # an unknown state: close it, so the late answer is never read as the next one.
            pool = self._idle.setdefault(key, [])
            if keep and len(pool) < self._max_idle:
                pool.append(conn)
            else:
                writer.close()

    def close(self) -> None:
        """Close every idle connection."""
        for pool in self._idle.values():
            for _, writer in pool:
                writer.close()
        self._idle.clear()


class _StaleConnectionError(Exception):
    """A reused connection was closed by the server before it answered."""


def _encode_head(method: str, target: Target, headers: list[tuple[str, str]], body: bytes) -> bytes:
    parts = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
    for name, value in headers:
        # A CR or LF in a value would split the request: header injection.
        if "\r" in value or "\n" in value:
            value = value.replace("\r", " ").replace("\n", " ")
        parts.append(f"{name}: {value}\r\n")
    if body or method in ("POST", "PUT", "PATCH"):
        parts.append(f"Content-Length: {len(body)}\r\n")
    parts.append("\r\n")
    text = "".join(parts)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _parse_head(raw: bytes) -> tuple[int, dict[str, str], str]:
    lines = raw.decode("latin-1").split("\r\n")
    try:
        version, code = lines[0].split(" ", 2)[:2]
        status = int(code)
    except ValueError as e:
        raise HttpClientError(f"bad status line {lines[0]!r}") from e
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, version


def _read_body_then_keep(
    status: int, headers: dict[str, str], version: str, method: str
) -> bool | None:
    """Whether the connection can be reused; None when the body runs to EOF."""
    conn = headers.get("connection", "").lower()
    keep = version == "HTTP/1.1" and conn != "close" or conn == "keep-alive"
    if method == "HEAD" or status in _NO_BODY_STATUS:
        headers["content-length"] = "0"
        headers.pop("transfer-encoding", None)
        return keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return keep
    if "content-length" in headers:
        return keep
    return None


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return
            await reader.readexactly(size + 2)
    length = int(headers.get("content-length", "0") or "0")
    while length > 0:
        chunk = await reader.read(min(length, 1 << 16))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        length -= len(chunk)


async def _drain_to_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 16):
        pass
