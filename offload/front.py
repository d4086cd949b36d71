"""A small front for several local web instances: round-robin over TCP connections.

``offload run`` starts it on ``OFFLOAD_WEB_PORT`` when ``OFFLOAD_WEB_INSTANCES`` > 1, as
App Engine's or Cloud Run's front end spreads clients over instances. Each new client
connection goes to the next instance that accepts one (an instance that refuses is
skipped), and bytes flow both ways unchanged, so streams and keep-alive work; the
requests of one kept-alive connection stay on one instance, as behind a TCP balancer.

    python -m offload.front --listen 127.0.0.1:8080 --backend 127.0.0.1:8090 ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import sys
from collections.abc import Sequence

__all__ = ["Front", "main"]

_CONNECT_TIMEOUT_SECONDS = 2.0
_CHUNK = 64 * 1024


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


class Front:
    """Accepts connections and hands each to the next backend that takes it."""

    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        if not backends:
            raise ValueError("a front needs at least one backend")
        self.backends = list(backends)
        self._next = itertools.cycle(range(len(self.backends)))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in self.backends:
            host, port = self.backends[next(self._next)]
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(host, port), _CONNECT_TIMEOUT_SECONDS
                )
            except (OSError, TimeoutError):
                continue  # that instance is down: the next one
        return None

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        """Join one client connection to one backend connection until both close."""
        upstream = await self._connect()
        if upstream is None:
            # Every instance refused: a 503, as a front end with no healthy instance.
            body = b'{"title":"Service Unavailable","status":503}'
            client_w.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            with contextlib.suppress(ConnectionError, OSError):
                await client_w.drain()
            client_w.close()
            return
        up_r, up_w = upstream
        await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
        for w in (up_w, client_w):
            w.close()

    async def serve(self, host: str, port: int) -> None:
        """Serve until SIGTERM or SIGINT."""
        server = await asyncio.start_server(self.handle, host, port, backlog=1024)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        line = {
            "severity": "INFO",
            "message": f"front listening on {host}:{port}, round-robin over "
            + ", ".join(f"{h}:{p}" for h, p in self.backends),
        }
        print(json.dumps(line), flush=True)
        async with server:
            await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m offload.front``."""
    parser = argparse.ArgumentParser(prog="offload-front", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, type=_address, help="host:port to accept on")
    parser.add_argument(
        "--backend", action="append", required=True, type=_address, help="host:port, repeated"
    )
    args = parser.parse_args(argv)
    asyncio.run(Front(args.backend).serve(*args.listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
