"""2. End to end: no-op jobs (demo.echo) from POST /jobs to succeeded, through emulator and worker.

Three runs of N jobs on one stack show where the time goes: web alone (queue paused),
the backlog drained by emulator and worker alone (queue resumed), then everything at
once, which is the figure. Finish times are the store's ``finished_at``, read from the
database directly so that polling does not load web.

The same runs on each engine: SQLite (the baseline), PostgreSQL on this machine (one web
and one worker instance), and the production topology on PostgreSQL: two web instances
behind ``offload.front`` and two worker instances, 2 processes each, one shared store.
PostgreSQL runs in a fresh schema, dropped afterwards; without a server they are skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

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
from tests.processes import Stack, make_stack

__all__ = ["run"]

BODY = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
CONCURRENCY = 16
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _submit(url: str, n: int) -> LoadResult:
    data = build_request(
        "POST", url + "/jobs", body=BODY, headers={"Content-Type": "application/json"}
    )
    result = run_load(url, lambda _i: data, concurrency=CONCURRENCY, total=n, keep_bodies=True)
    if result.statuses.get(202, 0) != n:
        raise RuntimeError(f"submit: expected {n} answers 202, got {dict(result.statuses)}")
    return result


def _stamp(value: object) -> float:
    """finished_at as epoch seconds (SQLite gives text, PostgreSQL a datetime)."""
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _finished(db: Path | str, ids: list[str], timeout: float) -> dict[str, float]:
    """Wait until every job in ``ids`` succeeded; their finished_at, epoch seconds.

    ``db``: the SQLite file (read only), or a database URL.
    """
    url = f"sqlite:///file:{db}?mode=ro&uri=true" if isinstance(db, Path) else db
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    end = time.monotonic() + timeout
    done: dict[str, float] = {}
    pending = list(ids)
    query = sqlalchemy.text(
        "SELECT id, status, finished_at FROM offload_jobs WHERE id IN :ids"
    ).bindparams(sqlalchemy.bindparam("ids", expanding=True))
    try:
        with engine.connect() as conn:
            while pending:
                for k in range(0, len(pending), 500):
                    rows = conn.execute(query, {"ids": pending[k : k + 500]}).all()
                    conn.rollback()  # a fresh snapshot for the next poll
                    for job_id, status, finished in rows:
                        if status == "succeeded":
                            done[job_id] = _stamp(finished)
                        elif status in ("failed", "cancelled"):
                            raise RuntimeError(f"job {job_id} ended {status}")
                pending = [i for i in pending if i not in done]
                if pending:
                    if time.monotonic() > end:
                        raise RuntimeError(
                            f"{len(pending)} of {len(ids)} jobs not done in {timeout}s"
                        )
                    time.sleep(0.1)
    finally:
        engine.dispose()
    return done


@dataclass(frozen=True)
class Measure:
    """One configuration's figures."""

    label: str
    rate: float  # jobs/s, submit -> succeeded, everything at once
    alone: float  # jobs/s, web alone (queue paused)
    drain: float  # jobs/s, the backlog drained by emulator + worker
    cpu: dict[str, float]  # CPU seconds per job, per kind of process
    latency: list[float]
    submit_latency: list[float]

    @property
    def per_job(self) -> float:
        return sum(self.cpu.values())


@contextmanager
def _postgres_schema(base_url: str) -> Iterator[str]:
    """A URL into a fresh schema of ``base_url``'s database, dropped afterwards."""
    schema = "offload_bench_" + secrets.token_hex(4)
    admin = sqlalchemy.create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _postgres_reachable(url: str) -> bool:
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except Exception:  # noqa: BLE001 - any failure means "no server here"
        return False
    return True


def _pids(stack: Stack) -> dict[str, list[int]]:
    """The processes that serve, per kind (every instance's gunicorn workers)."""
    pids = {
        "web": [p for n in stack.instances("web") for p in service_pids(stack.procs[n].pid)],
        "emulator": [stack.procs["emulator"].pid],
        "worker": [p for n in stack.instances("worker") for p in service_pids(stack.procs[n].pid)],
    }
    if "front" in stack.procs:
        pids["front"] = [stack.procs["front"].pid]
    return pids


def _backends(database_url: str, tag: str) -> list[int]:
    """PIDs of the PostgreSQL server processes serving this run (by application_name)."""
    engine = sqlalchemy.create_engine(database_url.split("?", 1)[0])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT pid FROM pg_stat_activity WHERE application_name LIKE :t"),
                {"t": tag + "%"},
            ).scalars()
            return list(rows)
    finally:
        engine.dispose()


def _measure(
    settings: Settings, label: str, database_url: str | None, instances: int = 1
) -> Measure:
    """Web alone, the backlog drained, then everything at once, on one configuration."""
    n = settings.e2e_jobs
    tmp = settings.tmp / f"e2e-{label.replace(' ', '-')}"
    progress(f"e2e [{label}]: starting the stack; {n} demo.echo jobs per run")
    env = {"OFFLOAD_JOB_MODULES": "jobs"}
    tag = "bench-" + secrets.token_hex(4)
    if database_url:
        # Named, so that the server processes serving this run can be found and measured.
        database_url = f"{database_url}&application_name={tag}"
        env["OFFLOAD_DATABASE_URL"] = database_url
    stack = make_stack(tmp, env=env, web_instances=instances, worker_instances=instances)
    db: Path | str = database_url or tmp / "offload.db"
    timeout = 60 + n / 20
    try:
        client = stack.tasks_client()
        # Web alone: the queue is paused, the worker idle.
        client.pause_queue(name=QUEUE_PATH)
        alone = _submit(stack.web_url, n)
        ids = [json.loads(r.body)["id"] for r in alone.replies]
        progress(f"e2e [{label}]: web alone {alone.rate:,.0f} jobs/s; draining the backlog")
        # Emulator and worker alone: drain that backlog.
        t0 = time.time()
        client.resume_queue(name=QUEUE_PATH)
        drained = _finished(db, ids, timeout)
        drain_rate = n / (max(drained.values()) - t0)
        progress(f"e2e [{label}]: drained at {drain_rate:,.0f} jobs/s; now everything at once")
        # Everything at once, with each process's CPU time.
        pids = _pids(stack)
        if database_url:
            pids["postgres"] = _backends(database_url, tag)
        cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        both = _submit(stack.web_url, n)
        sent = {json.loads(r.body)["id"]: r for r in both.replies}
        finished = _finished(db, list(sent), timeout)
        if database_url:
            # Connections opened during the run count whole (they began after cpu0).
            pids["postgres"] = sorted(set(pids["postgres"]) | set(_backends(database_url, tag)))
        cpu = {k: (cpu_seconds(v) - cpu0[k]) / n for k, v in pids.items()}
        first = min(r.started for r in both.replies)
        client.transport.close()
    finally:
        stack.stop()
    return Measure(
        label=label,
        rate=n / (max(finished.values()) - first),
        alone=alone.rate,
        drain=drain_rate,
        cpu=cpu,
        latency=[finished[i] - r.started for i, r in sent.items()],
        submit_latency=both.latencies(),
    )


def _engine_rows(m: Measure, base: Measure, what: str) -> list[Row]:
    """jobs/s and CPU per job of ``m`` beside ``base``, measured in the same run."""
    split = ", ".join(f"{k} {v * 1000:.2f}" for k, v in m.cpu.items())
    return [
        Row(
            "2 e2e",
            f"no-op jobs/s, {m.label}",
            f"{m.rate:,.0f} jobs/s",
            f"{base.rate:,.0f} jobs/s ({base.label})",
            f"{m.rate / base.rate:.2f}",
            note=f"{what}; drained {m.drain:,.0f} jobs/s, web alone {m.alone:,.0f} jobs/s; "
            f"p50 {fmt_ms(percentile(m.latency, 0.5))}",
        ),
        Row(
            "2 e2e",
            f"CPU per no-op job, {m.label}",
            f"{m.per_job * 1000:.2f} ms",
            f"{base.per_job * 1000:.2f} ms ({base.label})",
            f"{m.per_job / base.per_job:.2f}",
            note=f"ms of CPU per job: {split}"
            + (" (postgres: the server processes serving the run)" if "postgres" in m.cpu else ""),
        ),
    ]


def run(settings: Settings) -> list[Row]:
    """Submit N no-op jobs and time them to ``succeeded``, on SQLite and on PostgreSQL."""
    m = _measure(settings, "SQLite", None)
    rows = _sqlite_rows(settings, m)
    pg_url = os.environ.get("OFFLOAD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    if not _postgres_reachable(pg_url):
        progress(f"e2e: no PostgreSQL at {pg_url}; its rows are left out")
        return rows
    with _postgres_schema(pg_url) as url:
        pg = _measure(settings, "PostgreSQL", url)
    with _postgres_schema(pg_url) as url:
        topo = _measure(settings, "PostgreSQL 2x2", url, instances=2)
    rows += _engine_rows(pg, m, "1 web + 1 worker instance, 2 processes each, local server")
    rows += _engine_rows(
        topo, pg, "2 web instances behind offload.front + 2 worker instances, 2 processes each"
    )
    return rows


def _sqlite_rows(settings: Settings, m: Measure) -> list[Row]:
    n = settings.e2e_jobs
    cores = os.cpu_count() or 1
    per_job = m.per_job
    split = ", ".join(f"{k} {v * 1000:.2f}" for k, v in m.cpu.items())
    lat, submit_lat = m.latency, m.submit_latency
    return [
        Row(
            "2 e2e",
            f"no-op jobs/s, submit c{CONCURRENCY} -> succeeded",
            f"{m.rate:,.0f} jobs/s",
            f"{m.alone:,.0f} jobs/s",
            f"{m.rate / m.alone:.2f}",
            ">= 500 jobs/s",
            verdict(m.rate >= 500),
            f"{n:,} jobs; baseline: the same POSTs with the queue paused (web alone)",
        ),
        Row(
            "2 e2e",
            f"CPU per no-op job -> jobs/s on {cores} idle cores",
            f"{per_job * 1000:.2f} ms -> {cores / per_job:,.0f} jobs/s",
            f"{m.cpu['web'] * 1000:.2f} ms (web)",
            f"{per_job / m.cpu['web']:.1f}",
            ">= 500 jobs/s",
            verdict(cores / per_job >= 500),
            f"ms of CPU per job: {split} (the load generator excluded); baseline: web's share",
        ),
        Row(
            "2 e2e",
            "backlog drained by emulator + worker",
            f"{m.drain:,.0f} jobs/s",
            "500/s",
            f"{m.drain / 500:.2f}",
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
