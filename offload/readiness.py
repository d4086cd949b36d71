"""``/healthz`` (liveness: touches nothing) and ``/readyz`` (store and Cloud Tasks, bounded).

A readiness probe must answer fast whatever its dependencies do: each check runs in a
thread of its own and is waited for at most ``timeout`` seconds; its result is cached for
``ttl`` seconds, so a flood of probes costs one check per dependency per ``ttl``; and a
check still hanging (a stopped Cloud Tasks, a stalled database) is not started again
until it returns: the probe reports it as ``timeout`` meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import text

from offload.store import JobStore

__all__ = ["Probe", "ProbeResult", "bp", "init_app", "store_check", "tasks_check"]

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

PROBE_TIMEOUT_SECONDS = 1.0
PROBE_TTL_SECONDS = 2.0


@dataclass(frozen=True)
class ProbeResult:
    """One check's outcome: ``ok``, ``down`` (it failed) or ``timeout`` (no answer in time)."""

    status: str
    detail: str
    latency_ms: float
    checked_at: float  # time.monotonic()

    def as_json(self, now: float) -> dict[str, Any]:
        """The result as reported by ``/readyz``."""
        return {
            "status": self.status,
            "detail": self.detail,
            "latency_ms": round(self.latency_ms, 1),
            "age_seconds": round(max(0.0, now - self.checked_at), 1),
        }


class Probe:
    """A dependency's check, bounded by ``timeout`` and cached for ``ttl`` seconds."""

    def __init__(
        self,
        name: str,
        check: Callable[[float], str],
        *,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        ttl: float = PROBE_TTL_SECONDS,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.ttl = ttl
        self._check = check
        self._lock = threading.Lock()
        self._result: ProbeResult | None = None
        self._running: threading.Thread | None = None
        self._started = 0.0
        self._done = threading.Event()

    def result(self) -> ProbeResult:
        """The latest result; checks again past ``ttl``, waiting at most ``timeout``."""
        with self._lock:
            now = time.monotonic()
            if self._result is not None and now - self._result.checked_at < self.ttl:
                return self._result
            if self._running is None:
                self._done = threading.Event()
                self._started = now
                self._running = threading.Thread(
                    target=self._run, name=f"probe-{self.name}", daemon=True
                )
                self._running.start()
            done, started = self._done, self._started
        if done.wait(max(0.0, started + self.timeout - time.monotonic())):
            with self._lock:
                assert self._result is not None
                return self._result
        waited = time.monotonic() - started
        late = ProbeResult(
            "timeout", f"no answer within {self.timeout:g}s", waited * 1000, time.monotonic()
        )
        with self._lock:
            if self._running is not None:  # still hanging: remembered, not started again
                self._result = late
        return late

    def _run(self) -> None:
        started = time.monotonic()
        try:
            detail = self._check(self.timeout)
            status = "ok"
        except Exception as e:  # noqa: BLE001 - any failure of the dependency is "down"
            status, detail = "down", f"{type(e).__name__}: {e}"[:300]
        finished = time.monotonic()
        result = ProbeResult(status, detail, (finished - started) * 1000, finished)
        if status != "ok":
            log.warning("readiness: %s is %s: %s", self.name, status, detail)
        with self._lock:
            self._result = result
            self._running = None
            self._done.set()


def store_check(store: JobStore) -> Callable[[float], str]:
    """``SELECT 1`` on a connection of the store's own pool."""

    def check(_timeout: float) -> str:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return store.dialect

    return check


def tasks_check(client: Any, queue_path: str) -> Callable[[float], str]:
    """``GetQueue`` of the queue jobs go to, with the probe's timeout and no retries."""

    def check(timeout: float) -> str:
        queue = client.get_queue(name=queue_path, timeout=timeout, retry=None)
        return f"queue {queue_path.rsplit('/', 1)[-1]} {queue.state.name.lower()}"

    return check


def init_app(app: Flask, probes: Mapping[str, Probe]) -> None:
    """Serve ``/healthz`` and ``/readyz`` for ``probes`` (``store`` must be one of them)."""
    app.extensions["offload.probes"] = dict(probes)
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. Touches no dependency (see ``/readyz``)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Each dependency's state; 503 when the store is not ok (nothing can be recorded)."""
    probes: dict[str, Probe] = current_app.extensions["offload.probes"]
    results = {name: probe.result() for name, probe in probes.items()}
    now = time.monotonic()
    store_ok = results["store"].status == "ok"
    all_ok = all(r.status == "ok" for r in results.values())
    status = "ready" if all_ok else ("degraded" if store_ok else "unavailable")
    response = jsonify(
        {"status": status, "checks": {name: r.as_json(now) for name, r in results.items()}}
    )
    response.status_code = 200 if store_ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response
