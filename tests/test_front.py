"""The local round-robin front: real TCP, real HTTP servers behind it."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import ROOT, free_port
from tests.processes import tcp_open

pytestmark = pytest.mark.e2e


def _named_server(name: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def backends() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    servers = [_named_server("a"), _named_server("b")]
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _start_front(backend_ports: list[int]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, "-m", "offload.front", "--listen", f"127.0.0.1:{port}"]
    for p in backend_ports:
        argv += ["--backend", f"127.0.0.1:{p}"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not tcp_open(port):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the front did not start"
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def test_new_connections_go_round_robin_and_a_dead_instance_is_skipped(
    backends: list[http.server.ThreadingHTTPServer],
) -> None:
    ports = [s.server_address[1] for s in backends]
    dead = free_port()  # nothing listens there: refused, skipped
    proc, url = _start_front([ports[0], dead, ports[1]])
    try:
        seen = [requests.get(url, timeout=5).text for _ in range(6)]
        assert sorted(seen) == ["a", "a", "a", "b", "b", "b"]
        assert seen[0] != seen[1]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_with_every_instance_down_the_front_answers_503() -> None:
    proc, url = _start_front([free_port()])
    try:
        r = requests.get(url, timeout=10)
        assert r.status_code == 503
        assert r.headers["Content-Type"] == "application/problem+json"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
