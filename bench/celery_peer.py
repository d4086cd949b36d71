"""8. Beside Celery: the same no-op jobs through Offload and through Celery behind the same front.

Celery runs as its users deploy it behind HTTP: gunicorn + Flask with ``.delay()`` in the
view (2 sync workers, like Offload's web here), Redis as broker and result backend (the
machine's Redis, database 15, flushed before and after), a prefork worker of 2
processes. It is installed by this benchmark in a virtual environment of its own
(bench/peers/requirements-celery.txt, cached under ~/.cache/offload-bench), never in
Offload's. Both systems get the same N POSTs at the same concurrency; CPU is read from
/proc for every process of each role (the load generator excluded).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    Row,
    Settings,
    cpu_seconds,
    gunicorn_children,
    progress,
    service_pids,
)
from bench.e2e import _finished
from bench.loadgen import build_request, run_load
from tests.processes import ROOT, Proc, free_port, http_ok, make_stack

__all__ = ["run"]

REQUIREMENTS = ROOT / "bench" / "peers" / "requirements-celery.txt"
REDIS_DB = "15"
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
BODY = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
CONCURRENCY = 16


def _venv() -> Path:
    """The peer's virtual environment, made from its pinned requirements when needed."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "offload-bench"
    venv = cache / "celery-venv"
    stamp = venv / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        progress(f"celery: installing the peer into {venv}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        stamp.write_text(wanted)
    return venv


def _redis(*command: str) -> str:
    """One command to the peer's Redis database (RESP over a socket; Offload never uses it)."""
    with socket.create_connection(("127.0.0.1", 6379), timeout=10) as sock:
        stream = sock.makefile("rwb")
        for words in (("SELECT", REDIS_DB), command):
            stream.write(b"*%d\r\n" % len(words))
            for word in words:
                data = word.encode()
                stream.write(b"$%d\r\n%s\r\n" % (len(data), data))
        stream.flush()
        answers = []
        for _ in range(2):
            line = stream.readline().rstrip(b"\r\n")
            if line[:1] == b"$":
                size = int(line[1:])
                answers.append("" if size < 0 else stream.read(size + 2)[:-2].decode())
            elif line[:1] == b"-":
                raise RuntimeError(f"redis: {line[1:].decode()}")
            else:
                answers.append(line[1:].decode())
        return answers[-1]


def _redis_server_pid() -> int | None:
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == (
                "redis-server"
            ):
                return int(entry)
        except OSError:
            continue
    return None


def _submit_all(url: str, n: int) -> tuple[float, list[bytes]]:
    data = build_request(
        "POST", url + "/jobs", body=BODY, headers={"Content-Type": "application/json"}
    )
    result = run_load(url, lambda _i: data, concurrency=CONCURRENCY, total=n, keep_bodies=True)
    if result.statuses.get(202, 0) != n:
        raise RuntimeError(f"expected {n} answers 202, got {dict(result.statuses)}")
    return min(r.started for r in result.replies), [r.body for r in result.replies]


def _offload(settings: Settings, n: int) -> tuple[float, dict[str, float]]:
    tmp = settings.tmp / "peer-offload"
    stack = make_stack(tmp, env={"OFFLOAD_JOB_MODULES": "jobs"})
    try:
        pids = {
            "web": service_pids(stack.procs["web"].pid),
            "emulator": [stack.procs["emulator"].pid],
            "worker": service_pids(stack.procs["worker"].pid),
        }
        cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        first, bodies = _submit_all(stack.web_url, n)
        finished = _finished(tmp / "offload.db", [json.loads(b)["id"] for b in bodies], 60 + n)
        cpu = {k: (cpu_seconds(v) - cpu0[k]) / n for k, v in pids.items()}
    finally:
        stack.stop()
    return n / (max(finished.values()) - first), cpu


def _celery(settings: Settings, n: int) -> tuple[float, dict[str, float]]:
    venv = _venv()
    tmp = settings.tmp / "peer-celery"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"PEER_REDIS_URL": REDIS_URL, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    _redis("FLUSHDB")
    port = free_port()
    web = Proc(
        "celery-web",
        [str(venv / "bin" / "gunicorn"), "-c", "bench/peers/gunicorn_peer.conf.py",
         "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "sync",
         "--log-level", "warning", "bench.peers.celery_app:app"],
        env, tmp / "web.out",
    )  # fmt: skip
    worker = Proc(
        "celery-worker",
        [str(venv / "bin" / "celery"), "-A", "bench.peers.celery_app:celery", "worker",
         "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        env, tmp / "worker.out",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        web.wait_until(lambda: http_ok(url + "/healthz"), timeout=60)
        worker.wait_until(lambda: len(gunicorn_children(worker.pid)) >= 2, timeout=60)
        redis_pid = _redis_server_pid()
        pids = {
            "web": gunicorn_children(web.pid),
            "worker": [worker.pid, *gunicorn_children(worker.pid)],
            "redis": [redis_pid] if redis_pid else [],
        }
        cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        first, _ = _submit_all(url, n)
        end = time.monotonic() + 60 + n
        while int(_redis("GET", "peer:done") or 0) < n:
            if time.monotonic() > end:
                raise RuntimeError("celery did not run every job in time")
            time.sleep(0.02)
        done = time.time()
        cpu = {k: (cpu_seconds(v) - cpu0[k]) / n for k, v in pids.items()}
    finally:
        worker.stop()
        web.stop()
        _redis("FLUSHDB")
    return n / (done - first), cpu


def run(settings: Settings) -> list[Row]:
    """Offload and Celery, N no-op jobs each, in one run."""
    n = 500 if settings.quick else 3_000
    progress(f"celery peer: {n} no-op jobs through Offload, then through Celery")
    off_rate, off_cpu = _offload(settings, n)
    cel_rate, cel_cpu = _celery(settings, n)
    off_total, cel_total = sum(off_cpu.values()), sum(cel_cpu.values())

    def split(cpu: dict[str, float]) -> str:
        return ", ".join(f"{k} {v * 1000:.2f}" for k, v in cpu.items())

    return [
        Row(
            "8 peers",
            f"no-op jobs/s end to end, c{CONCURRENCY} (Offload vs Celery behind HTTP)",
            f"{off_rate:,.0f} jobs/s",
            f"{cel_rate:,.0f} jobs/s",
            f"{off_rate / cel_rate:.2f}",
            ">= 1.00",
            "PASS" if off_rate >= cel_rate else "MISS",
            f"{n:,} jobs each; baseline: Celery 5.7, gunicorn+Flask .delay(), Redis, prefork 2",
        ),
        Row(
            "8 peers",
            "CPU per no-op job (Offload vs Celery behind HTTP)",
            f"{off_total * 1000:.2f} ms",
            f"{cel_total * 1000:.2f} ms",
            f"{off_total / cel_total:.2f}",
            "<= 3.0 ms",
            "PASS" if off_total <= 0.003 else "MISS",
            f"Offload: {split(off_cpu)}; Celery: {split(cel_cpu)} (ms per job)",
        ),
    ]
