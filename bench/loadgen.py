"""A small HTTP/1.1 load generator (asyncio protocols, no dependencies).

gunicorn's sync workers close the connection after every answer, so each request
usually costs a new TCP connection; the client reuses one when the server keeps it
open. Latency is measured from the first byte of connecting to the last byte of the
answer, as a client sees it. The client's own CPU time is returned, so a table can show
that the generator was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["LoadResult", "Reply", "build_request", "run_load"]


@dataclass(frozen=True)
class Reply:
    """One answer: wall-clock start, latency in seconds, status, and body if kept."""

    started: float
    latency: float
    status: int
    body: bytes


@dataclass
class LoadResult:
    """What one load run measured."""

    concurrency: int
    elapsed: float
    cpu_seconds: float
    replies: list[Reply] = field(default_factory=list)
    errors: int = 0

    @property
    def count(self) -> int:
        """Answers received."""
        return len(self.replies)

    @property
    def rate(self) -> float:
        """Answers per second."""
        return self.count / self.elapsed if self.elapsed else 0.0

    @property
    def statuses(self) -> Counter[int]:
        """How many answers had each status."""
        return Counter(r.status for r in self.replies)

    def latencies(self) -> list[float]:
        """Every latency, seconds, sorted."""
        return sorted(r.latency for r in self.replies)


def build_request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    all_headers = {"Content-Length": str(len(body)), **(headers or {})}
    if not body and method in ("GET", "DELETE", "HEAD"):
        all_headers.pop("Content-Length")
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Conn(asyncio.Protocol):
    """One connection; parses one answer at a time (Content-Length or close-delimited)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False
        self.head_end = -1
        self.length = -1
        self.status = 0
        self.keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buf.clear()
        self.head_end = self.length = -1
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._try_complete()

    def _try_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        if self.head_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_end = end + 4
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                self.length = int(head[i + 17 :].split(b"\r\n", 1)[0])
            elif self.status in (204, 304):
                self.length = 0
            self.keep = b"\r\nconnection: close" not in head
        if self.length >= 0 and len(self.buf) >= self.head_end + self.length:
            body = bytes(self.buf[self.head_end : self.head_end + self.length])
            if not self.keep and self.transport is not None:
                # gunicorn's sync worker waits for the client's FIN before its next
                # accept (close_graceful): close at once, as a prompt client does.
                self.transport.close()
            self.waiter.set_result((self.status, body, self.keep))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.head_end >= 0 and self.length < 0:
                self.waiter.set_result((self.status, bytes(self.buf[self.head_end :]), False))
            else:
                self.waiter.set_exception(ConnectionError("closed before the answer"))


async def _run(
    host: str,
    port: int,
    make: Callable[[int], bytes],
    concurrency: int,
    total: int | None,
    duration: float | None,
    keep_bodies: bool,
    result: LoadResult,
) -> None:
    loop = asyncio.get_running_loop()
    issued = 0
    stop_at = time.perf_counter() + duration if duration else float("inf")

    def next_index() -> int | None:
        nonlocal issued
        if (total is not None and issued >= total) or time.perf_counter() >= stop_at:
            return None
        issued += 1
        return issued - 1

    async def slot() -> None:
        conn: _Conn | None = None
        while (i := next_index()) is not None:
            data = make(i)
            wall, t0 = time.time(), time.perf_counter()
            try:
                if conn is None or conn.closed:
                    _, conn = await loop.create_connection(_Conn, host, port)
                status, body, keep = await conn.send(data)
            except OSError:
                result.errors += 1
                conn = None
                await asyncio.sleep(0.01)
                continue
            latency = time.perf_counter() - t0
            result.replies.append(Reply(wall, latency, status, body if keep_bodies else b""))
            if not keep and conn.transport is not None:
                conn.transport.close()
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(slot() for _ in range(concurrency)))


def run_load(
    url: str,
    make: Callable[[int], bytes],
    *,
    concurrency: int,
    total: int | None = None,
    duration: float | None = None,
    keep_bodies: bool = False,
) -> LoadResult:
    """Send requests ``make(i)`` to ``url``'s host, ``concurrency`` at a time.

    Stops after ``total`` requests or ``duration`` seconds, whichever comes first.
    """
    if total is None and duration is None:
        raise ValueError("give total or duration")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult(concurrency=concurrency, elapsed=0.0, cpu_seconds=0.0)
    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(_run(host, port, make, concurrency, total, duration, keep_bodies, result))
    result.elapsed = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - cpu0
    return result
