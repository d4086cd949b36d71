"""2. End to end: no-op jobs (demo.echo) from POST /jobs to succeeded, through emulator and worker.

Three runs of N jobs on one stack show where the time goes: web alone (queue paused),
the backlog drained by emulator and worker alone (queue resumed), then everything at
once, which is the figure. Finish times are the store's ``finished_at``, read from the
SQLite file directly so that polling does not load web.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from pathlib import Path

from bench.common import (
    QUEUE_PATH,
    Row,
    Settings,
    cpu_seconds,
    fmt_ms,
    percentile,
    progress,
    service_pids,
    verdict,
)
from bench.loadgen import LoadResult, build_request, run_load
from tests.processes import make_stack

__all__ = ["run"]

BODY = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
CONCURRENCY = 16


def _submit(url: str, n: int) -> LoadResult:
    data = build_request(
        "POST", url + "/jobs", body=BODY, headers={"Content-Type": "application/json"}
    )
    result = run_load(url, lambda _i: data, concurrency=CONCURRENCY, total=n, keep_bodies=True)
    if result.statuses.get(202, 0) != n:
        raise RuntimeError(f"submit: expected {n} answers 202, got {dict(result.statuses)}")
    return result


def _finished(db: Path, ids: list[str], timeout: float) -> dict[str, float]:
    """Wait until every job in ``ids`` succeeded; their finished_at, epoch seconds."""
    end = time.monotonic() + timeout
    done: dict[str, float] = {}
    pending = list(ids)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        while pending:
            for k in range(0, len(pending), 500):
                chunk = pending[k : k + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT id, status, finished_at FROM offload_jobs WHERE id IN ({marks})",
                    chunk,
                ).fetchall()
                for job_id, status, finished in rows:
                    if status == "succeeded":
                        stamp = dt.datetime.fromisoformat(finished).replace(tzinfo=dt.UTC)
                        done[job_id] = stamp.timestamp()
                    elif status in ("failed", "cancelled"):
                        raise RuntimeError(f"job {job_id} ended {status}")
            pending = [i for i in pending if i not in done]
            if pending:
                if time.monotonic() > end:
                    raise RuntimeError(f"{len(pending)} of {len(ids)} jobs not done in {timeout}s")
                time.sleep(0.1)
    finally:
        conn.close()
    return done


def run(settings: Settings) -> list[Row]:
    """Submit N no-op jobs and time them to ``succeeded``."""
    n = settings.e2e_jobs
    tmp = settings.tmp / "e2e"
    progress(f"e2e: starting the stack; {n} demo.echo jobs per run")
    stack = make_stack(tmp, env={"OFFLOAD_JOB_MODULES": "jobs"})
    db = tmp / "offload.db"
    timeout = 60 + n / 20
    try:
        client = stack.tasks_client()
        # Web alone: the queue is paused, the worker idle.
        client.pause_queue(name=QUEUE_PATH)
        alone = _submit(stack.web_url, n)
        ids = [json.loads(r.body)["id"] for r in alone.replies]
        progress(f"e2e: web alone {alone.rate:,.0f} jobs/s; draining the backlog")
        # Emulator and worker alone: drain that backlog.
        t0 = time.time()
        client.resume_queue(name=QUEUE_PATH)
        drained = _finished(db, ids, timeout)
        drain_rate = n / (max(drained.values()) - t0)
        progress(f"e2e: drained at {drain_rate:,.0f} jobs/s; now everything at once")
        # Everything at once, with each process's CPU time.
        pids = {
            "web": service_pids(stack.procs["web"].pid),
            "emulator": [stack.procs["emulator"].pid],
            "worker": service_pids(stack.procs["worker"].pid),
        }
        cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        both = _submit(stack.web_url, n)
        sent = {json.loads(r.body)["id"]: r for r in both.replies}
        finished = _finished(db, list(sent), timeout)
        cpu = {k: (cpu_seconds(v) - cpu0[k]) / n for k, v in pids.items()}
        first = min(r.started for r in both.replies)
        rate = n / (max(finished.values()) - first)
        lat = [finished[i] - r.started for i, r in sent.items()]
        submit_lat = both.latencies()
        client.transport.close()
    finally:
        stack.stop()
    per_job = sum(cpu.values())
    cores = os.cpu_count() or 1
    split = ", ".join(f"{k} {v * 1000:.2f}" for k, v in cpu.items())
    return [
        Row(
            "2 e2e",
            f"no-op jobs/s, submit c{CONCURRENCY} -> succeeded",
            f"{rate:,.0f} jobs/s",
            f"{alone.rate:,.0f} jobs/s",
            f"{rate / alone.rate:.2f}",
            ">= 500 jobs/s",
            verdict(rate >= 500),
            f"{n:,} jobs; baseline: the same POSTs with the queue paused (web alone)",
        ),
        Row(
            "2 e2e",
            f"CPU per no-op job -> jobs/s on {cores} idle cores",
            f"{per_job * 1000:.2f} ms -> {cores / per_job:,.0f} jobs/s",
            f"{cpu['web'] * 1000:.2f} ms (web)",
            f"{per_job / cpu['web']:.1f}",
            ">= 500 jobs/s",
            verdict(cores / per_job >= 500),
            f"ms of CPU per job: {split} (the load generator excluded); baseline: web's share",
        ),
        Row(
            "2 e2e",
            "backlog drained by emulator + worker",
            f"{drain_rate:,.0f} jobs/s",
            "500/s",
            f"{drain_rate / 500:.2f}",
            note="baseline: the queue's rate limit (queue.yaml 500/s, 50 concurrent); "
            "2 worker processes",
        ),
        Row(
            "2 e2e",
            "submit -> succeeded latency",
            f"p50 {fmt_ms(percentile(lat, 0.5))}, p99 {fmt_ms(percentile(lat, 0.99))}",
            f"p50 {fmt_ms(percentile(submit_lat, 0.5))}, "
            f"p99 {fmt_ms(percentile(submit_lat, 0.99))}",
            f"{percentile(lat, 0.5) / percentile(submit_lat, 0.5):.1f}",
            note="baseline: the POST's own latency in the same run",
        ),
    ]
