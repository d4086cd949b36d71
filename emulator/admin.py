"""The emulator's HTTP side: OIDC certs, health, admin calls for tests, the REST API.

A stdlib ``ThreadingHTTPServer`` on its own thread; anything touching the store is
handed to the event loop, which owns the store.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from emulator.rest import RestGateway

logger = logging.getLogger(__name__)

CERTS_PATH = "/oauth2/v1/certs"
MAX_BODY_BYTES = 16 << 20  # far above the largest task; the gRPC side allows 8 MiB


class AdminServer:
    """Serves the certs, ``/healthz``, ``/admin/*`` and the REST API (``rest.py``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        certs: bytes,
        release_names: Callable[[str | None], int],
        queue_stats: Callable[[], list[dict[str, Any]]],
        rest: RestGateway | None = None,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle and the
            # client's delayed ACK hold every keep-alive answer back ~40 ms.
            disable_nagle_algorithm = True
            server_version = "offload-emulator"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("admin http: " + format, *args)

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if self.path.startswith(CERTS_PATH):
                    self.send_header("Cache-Control", "public, max-age=300")
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes | None:
                """The request body; None (answered 400/413 already) when unusable."""
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0:
                    self.close_connection = True
                    self._send(400, b'{"error":"bad Content-Length"}')
                    return None
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._send(413, b'{"error":"request body too large"}')
                    return None
                return self.rfile.read(length) if length else b""

            def _rest(self, raw: bytes) -> bool:
                """Answer a REST API call (``/v2/...``, ``/v2beta3/...``); False if not one."""
                if outer.rest is None or not outer.rest.matches(urlsplit(self.path).path):
                    return False
                status, body = outer.rest.handle(self.command, self.path, raw)
                self._send(status, body)
                return True

            def do_PATCH(self) -> None:
                raw = self._body()
                if raw is not None and not self._rest(raw):
                    self._send(404, b'{"error":"not found"}')

            do_DELETE = do_PUT = do_PATCH

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if self._rest(b""):
                    return
                if path == CERTS_PATH:
                    self._send(200, outer.certs)
                elif path == "/healthz":
                    self._send(200, b'{"status":"ok"}')
                elif path == "/admin/queues":
                    self._send(200, json.dumps(outer.queue_stats()).encode())
                else:
                    self._send(404, b'{"error":"not found"}')

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                raw = self._body()
                if raw is None:
                    return
                if parts.path != "/admin/release-names":
                    if not self._rest(raw):
                        self._send(404, b'{"error":"not found"}')
                    return
                queue = parse_qs(parts.query).get("queue", [None])[0]
                if raw.strip():
                    try:
                        queue = json.loads(raw).get("queue", queue)
                    except (ValueError, AttributeError):
                        self._send(400, b'{"error":"body must be a JSON object"}')
                        return
                released = outer.release_names(queue)
                self._send(200, json.dumps({"released": released}).encode())

        self.certs = certs
        self.release_names = release_names
        self.queue_stats = queue_stats
        self.rest = rest
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="emulator-admin-http", daemon=True
        )

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
