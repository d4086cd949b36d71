"""Fixtures for the emulator's tests: the emulator as a real subprocess, a real client,
and real local HTTP handlers that record every request and answer a script.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.protobuf import duration_pb2

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "emu-test"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- scripted HTTP handler --------------------------------------------------------------


@dataclass
class Seen:
    """One request a handler received."""

    at: float
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw_headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Answer:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections when a queue's burst (100) arrives at
    # once, e.g. every task due after a restart: they would hang until TCP gives up.
    request_queue_size = 1024


_path_ids = itertools.count()


class Handler:
    """A threaded HTTP server: per path, answers a script in order (then 200) and records all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scripts: dict[str, list[Answer]] = {}
        self.seen: dict[str, list[Seen]] = {}
        self.cond = threading.Condition(self.lock)
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                with outer.lock:
                    script = outer.scripts.get(path) or []
                    answer = script.pop(0) if script else Answer()
                    outer.in_flight[path] = outer.in_flight.get(path, 0) + 1
                    outer.max_in_flight[path] = max(
                        outer.max_in_flight.get(path, 0), outer.in_flight[path]
                    )
                    outer.seen.setdefault(path, []).append(
                        Seen(
                            time.monotonic(),
                            self.command,
                            path,
                            {k.lower(): v for k, v in self.headers.items()},
                            list(self.headers.items()),
                            body,
                        )
                    )
                    outer.cond.notify_all()
                try:
                    if answer.delay:
                        time.sleep(answer.delay)
                    self.send_response(answer.status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the emulator gave up on this attempt (dispatch deadline)
                finally:
                    with outer.lock:
                        outer.in_flight[path] -= 1

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def do_HEAD(self) -> None:
                self._any()

        self.server = _Server(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def path(self, *answers: Answer | int) -> str:
        """A fresh path that answers ``answers`` in order, then 200."""
        p = f"/h{next(_path_ids)}"  # unique across handlers: tests pass paths between them
        self.scripts[p] = [a if isinstance(a, Answer) else Answer(a) for a in answers]
        return p

    def wait(self, path: str, count: int, timeout: float = 15.0) -> list[Seen]:
        """Wait until ``path`` has received ``count`` requests; return them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.seen.get(path, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len(self.seen.get(path, []))
                    raise AssertionError(f"{path}: {got} of {count} requests after {timeout}s")
                self.cond.wait(left)
            return list(self.seen[path])

    def requests(self, path: str) -> list[Seen]:
        """Requests received so far on ``path``."""
        with self.lock:
            return list(self.seen.get(path, []))

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()


# -- the emulator process ---------------------------------------------------------------


class Emulator:
    """``python -m emulator`` on free ports, stopped by PID."""

    def __init__(self, tmp: Path, args: list[str], *, handler_url: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.http_port = free_port()
        self.out_path = tmp / f"emulator-{self.port}.out"
        argv = [
            sys.executable, "-m", "emulator",
            "--port", str(self.port),
            "--http-port", str(self.http_port),
            "--project", PROJECT,
            "--location", LOCATION,
            "--appengine-service", f"worker={handler_url}",
            "--appengine-default-url", handler_url,
            "--min-dispatch-deadline-seconds", "0.2",
            *args,
        ]  # fmt: skip
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in stop()
        # Its own process group, so a test can SIGKILL the whole of it and nothing else.
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.http = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                self._out.close()
                raise RuntimeError(f"emulator exited:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulator not ready:\n{self.output()}")
            time.sleep(0.05)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.client = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=self.channel)
        )

    def output(self) -> str:
        """What the process printed."""
        return self.out_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines printed so far."""
        out = []
        for line in self.output().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def post(self, path: str, body: bytes = b"") -> Any:
        """POST to the emulator's HTTP port; the JSON answer."""
        req = urllib.request.Request(self.http + path, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def kill(self) -> None:
        """SIGKILL the emulator's process group (a crash: nothing is flushed)."""
        if hasattr(self, "channel"):
            self.channel.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._out.close()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop by PID; the exit code."""
        if hasattr(self, "channel"):
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._out.closed:
            self._out.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def handler() -> Iterator[Handler]:
    """The scripted HTTP handler, shared by the session."""
    h = Handler()
    yield h
    h.close()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, handler: Handler) -> Iterator[Emulator]:
    """One emulator shared by the session (tests use their own queues)."""
    emu = Emulator(tmp_path_factory.mktemp("emu"), [], handler_url=handler.url)
    yield emu
    emu.stop()


@pytest.fixture
def start_emulator(tmp_path: Path, handler: Handler) -> Iterator[Callable[..., Emulator]]:
    """Start a private emulator with extra flags (stopped at teardown)."""
    started: list[Emulator] = []

    def start(*args: str, tmp: Path | None = None) -> Emulator:
        emu = Emulator(tmp or tmp_path, list(args), handler_url=handler.url)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


_queue_ids = itertools.count()


def seconds(value: float) -> duration_pb2.Duration:
    """A Duration of ``value`` seconds."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


@pytest.fixture
def make_queue(emulator: Emulator) -> Callable[..., str]:
    """Create a fresh queue through the API; returns its name."""

    def make(
        *,
        rate: float = 500,
        concurrent: int = 0,
        max_attempts: int = 0,
        min_backoff: float = 0.05,
        max_backoff: float = 0.2,
        max_doublings: int = 0,
        max_retry_duration: float | None = None,
        client: Any = None,
        service: str = "",
    ) -> str:
        name = f"{PARENT}/queues/q{next(_queue_ids)}-{int(time.time() * 1000) % 10**9}"
        retry = tasks_v2.RetryConfig(
            max_attempts=max_attempts,
            min_backoff=seconds(min_backoff),
            max_backoff=seconds(max_backoff),
            max_doublings=max_doublings,
        )
        if max_retry_duration is not None:
            retry.max_retry_duration = seconds(max_retry_duration)
        queue = tasks_v2.Queue(
            name=name,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=rate, max_concurrent_dispatches=concurrent
            ),
            retry_config=retry,
        )
        if service:
            queue.app_engine_routing_override = tasks_v2.AppEngineRouting(service=service)
        (client or emulator.client).create_queue(parent=PARENT, queue=queue)
        return name

    return make
