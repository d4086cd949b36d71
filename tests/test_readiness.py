"""/healthz touches nothing; /readyz reports the store and Cloud Tasks apart, fast, cached."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from offload.readiness import Probe
from tests.conftest import app_config
from tests.processes import PROJECT, Stack
from web import create_app

# Each check is waited for at most 1 s; generous bounds for a loaded 2-core machine.
ANSWER_BOUND = 3.0


class Silent:
    """A TCP port that accepts connections and never answers (a stopped Cloud Tasks)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for conn in self.held:
            conn.close()


def web_with_tasks_at(tmp_path: Path, host: str) -> Flask:
    return create_app(app_config(tmp_path, TASKS_EMULATOR_HOST=host))


@pytest.fixture
def silent() -> Iterator[Silent]:
    s = Silent()
    yield s
    s.close()


def close(app: Flask) -> None:
    app.extensions["offload.tasks"].close()
    app.extensions["offload.store"].dispose()


def test_healthz_touches_no_dependency(web_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise OSError("the database is gone")

    monkeypatch.setattr(web_app.extensions["offload.store"].engine, "connect", broken)
    monkeypatch.setattr(web_app.extensions["offload.store"].engine, "begin", broken)
    client = web_app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["store"]["status"] == "down"
    assert "the database is gone" in body["checks"]["store"]["detail"]


def test_readyz_is_ready_with_a_store_and_the_emulator(web_app_on_emulator: Flask) -> None:
    r = web_app_on_emulator.test_client().get("/readyz")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["status"] == "ready"
    assert {k: v["status"] for k, v in body["checks"].items()} == {
        "store": "ok",
        "cloud_tasks": "ok",
    }


def test_cloud_tasks_unreachable_is_degraded_not_unavailable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    app = web_with_tasks_at(tmp_path, f"127.0.0.1:{port}")
    try:
        started = time.monotonic()
        r = app.test_client().get("/readyz")
        assert time.monotonic() - started < ANSWER_BOUND
        assert r.status_code == 200
        body = r.get_json()
        assert body["status"] == "degraded"
        assert body["checks"]["store"]["status"] == "ok"
        assert body["checks"]["cloud_tasks"]["status"] in ("down", "timeout")
    finally:
        close(app)


def test_a_hung_cloud_tasks_costs_the_probe_its_timeout_once(
    tmp_path: Path, silent: Silent
) -> None:
    app = web_with_tasks_at(tmp_path, f"127.0.0.1:{silent.port}")
    try:
        client = app.test_client()
        started = time.monotonic()
        first = client.get("/readyz").get_json()
        assert time.monotonic() - started < ANSWER_BOUND
        assert first["checks"]["cloud_tasks"]["status"] == "timeout"
        started = time.monotonic()
        for _ in range(20):  # cached: no new check, no waiting
            assert client.get("/readyz").get_json()["checks"]["cloud_tasks"]["status"] in (
                "timeout",
                "down",
            )
        assert time.monotonic() - started < ANSWER_BOUND
        probes = [t for t in threading.enumerate() if t.name == "probe-cloud_tasks"]
        assert len(probes) <= 1
    finally:
        close(app)


def test_a_probe_is_cached_for_its_ttl_and_checks_again_after() -> None:
    calls: list[float] = []

    def check(_timeout: float) -> str:
        calls.append(time.monotonic())
        return "fine"

    probe = Probe("x", check, timeout=1.0, ttl=0.3)
    assert [probe.result().status for _ in range(10)] == ["ok"] * 10
    assert len(calls) == 1
    end = time.monotonic() + 5
    while len(calls) < 2:  # past the ttl, the next result checks again
        assert time.monotonic() < end
        probe.result()
        time.sleep(0.05)


def test_a_hanging_check_is_not_started_again_until_it_returns() -> None:
    release = threading.Event()
    calls = 0

    def check(_timeout: float) -> str:
        nonlocal calls
        calls += 1
        release.wait(10)
        return "late"

    probe = Probe("hang", check, timeout=0.2, ttl=0.0)
    try:
        assert [probe.result().status for _ in range(5)] == ["timeout"] * 5
        assert calls == 1
    finally:
        release.set()
    end = time.monotonic() + 5
    while probe.result().status != "ok":
        assert time.monotonic() < end
        time.sleep(0.05)


@pytest.mark.e2e
def test_a_stopped_emulator_shows_on_readyz_and_recovers(tmp_path: Path) -> None:
    """SIGSTOP (a hung Cloud Tasks): /readyz still answers at once; SIGCONT: ok again."""
    env = {
        "OFFLOAD_PROJECT_ID": PROJECT,
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}",
        "OFFLOAD_LOG_DIR": str(tmp_path / "log"),
    }
    stack = Stack(tmp=tmp_path, env=env)
    try:
        stack.start_emulator()
        stack.start_service("web", processes=1)
        url = stack.web_url

        def cloud_tasks() -> str:
            body = requests.get(f"{url}/readyz", timeout=ANSWER_BOUND).json()
            status: str = body["checks"]["cloud_tasks"]["status"]
            return status

        assert cloud_tasks() == "ok"
        emulator = stack.procs["emulator"]
        emulator.popen.send_signal(signal.SIGSTOP)
        try:
            end = time.monotonic() + 15
            while cloud_tasks() == "ok":  # the cached ok ages out first
                assert time.monotonic() < end
                time.sleep(0.2)
            started = time.monotonic()
            assert requests.get(f"{url}/healthz", timeout=ANSWER_BOUND).status_code == 200
            assert cloud_tasks() in ("timeout", "down")
            assert time.monotonic() - started < ANSWER_BOUND
        finally:
            emulator.popen.send_signal(signal.SIGCONT)
        end = time.monotonic() + 15
        while cloud_tasks() != "ok":
            assert time.monotonic() < end, stack.outputs()
            time.sleep(0.2)
    finally:
        stack.stop()
