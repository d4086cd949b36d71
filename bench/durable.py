"""Durable jobs' cost per step, and submit -> succeeded latency below saturation.

- Per step: one ``demo.long`` job of N instant steps (each a stored ``ctx.step``), CPU
  of web, worker and emulator divided by N, beside the CPU of one no-op job measured on
  the same stack (each step writes a row and two events, as a job's finish does).
- Unsaturated latency: ``demo.echo`` jobs submitted at a steady rate well below the
  stack's capacity by 4 paced clients (open loop, so no backlog builds), submit ->
  ``succeeded`` (the store's ``finished_at``) at p50 and p99, beside the POST's own
  latency in the same run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.batch import _cpu
from bench.common import Row, Settings, fmt_ms, percentile, progress, verdict
from bench.e2e import _finished
from tests.processes import make_stack

__all__ = ["run"]

SERVICES = ("web", "worker", "emulator")
CLIENTS = 4


def _per_step(url: str, db: Path, cpu: Callable[[], float], steps: int) -> tuple[float, float]:
    """CPU seconds per step of one demo.long job, and per no-op job (the baseline).

    Both wait on the store file (read only), so polling costs the services nothing.
    """
    noops = 50
    before = cpu()
    ids = [
        requests.post(f"{url}/jobs", json={"type": "demo.echo", "payload": {}}, timeout=30).json()[
            "id"
        ]
        for _ in range(noops)
    ]
    _finished(db, ids, 120)
    per_job = (cpu() - before) / noops
    before = cpu()
    body = {"type": "demo.long", "payload": {"steps": steps, "step_seconds": 0}}
    job_id = requests.post(f"{url}/jobs", json=body, timeout=30).json()["id"]
    _finished(db, [job_id], 600)
    return (cpu() - before) / steps, per_job


def _paced(url: str, rate: float, total: int) -> tuple[dict[str, float], list[float]]:
    """``total`` no-op jobs at ``rate``/s from CLIENTS threads: start times, POST latencies."""
    started: dict[str, float] = {}
    posts: list[float] = []
    lock = threading.Lock()
    t0 = time.time() + 0.2

    def client(k: int) -> None:
        session = requests.Session()
        for i in range(k, total, CLIENTS):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            r = session.post(f"{url}/jobs", json={"type": "demo.echo", "payload": {}}, timeout=30)
            r.raise_for_status()
            with lock:
                started[r.json()["id"]] = sent
                posts.append(time.time() - sent)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return started, posts


def run(settings: Settings) -> list[Row]:
    """Cost per durable step, then latency at a steady rate below capacity."""
    steps = 200 if settings.quick else 1000
    total, rate = (200, 40.0) if settings.quick else (1000, 50.0)
    tmp: Path = settings.tmp / "durable"
    progress("durable: starting emulator, worker and web")
    stack = make_stack(tmp / "stack", env={"OFFLOAD_JOB_MODULES": "jobs"})
    try:
        progress(f"durable: 50 no-op jobs, then one demo.long of {steps} steps")
        db = Path(stack.env["OFFLOAD_DATABASE_URL"].removeprefix("sqlite:///"))
        per_step, per_job = _per_step(stack.web_url, db, lambda: _cpu(stack, *SERVICES), steps)
        progress(f"durable: {total} no-op jobs at {rate:.0f}/s from {CLIENTS} clients")
        started, posts = _paced(stack.web_url, rate, total)
        finished = _finished(db, list(started), 120)
    finally:
        stack.stop()
    latencies = [finished[j] - started[j] for j in started]
    p99 = percentile(latencies, 0.99)
    return [
        Row(
            "durable",
            f"CPU per ctx.step (demo.long, {steps} instant steps, web + worker + emulator)",
            f"{per_step * 1000:.2f} ms",
            f"{per_job * 1000:.2f} ms",
            f"{per_step / per_job:.2f}" if per_job else "",
            note="baseline: CPU per no-op job on the same stack (50 jobs, submit to succeeded)",
        ),
        Row(
            "durable",
            f"submit -> succeeded at {rate:.0f} jobs/s, {CLIENTS} clients (not saturated)",
            f"p50 {fmt_ms(percentile(latencies, 0.5))}, p99 {fmt_ms(p99)}",
            f"p50 {fmt_ms(percentile(posts, 0.5))}, p99 {fmt_ms(percentile(posts, 0.99))}",
            f"{p99 / percentile(posts, 0.99):.1f}" if posts else "",
            "p99 < 100 ms",
            verdict(p99 < 0.100),
            f"{total} jobs, open loop; baseline: the POST's own latency in the same run",
        ),
    ]
