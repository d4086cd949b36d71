"""6. The store at scale: GET /jobs?status=failed and GET /jobs/<id> with a million jobs.

Rows are bulk-loaded straight into the store's own tables (executemany on SQLite, COPY on
PostgreSQL, one finished attempt per job), then read through the real web service under
gunicorn, one request at a time. The baseline is the same requests against a store of
1,000 jobs. The query plan of each read, captured from the store's own SQL, shows which
index answers it. PostgreSQL data lives in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.common import Row, Settings, fmt_ms, percentile, progress, service_env, start_gunicorn
from bench.common import verdict as _verdict
from bench.loadgen import build_request, run_load
from offload.ids import base32
from offload.store import JobStore
from tests.processes import free_port

__all__ = ["run"]

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BASELINE_ROWS = 1_000
JOB_COLUMNS = (
    "id", "type", "status", "reason", "payload", "result", "error", "request_id", "attempts",
    "max_attempts", "deadline_seconds", "cancel_requested", "task_name", "created_at",
    "updated_at", "started_at", "finished_at",
)  # fmt: skip
ATTEMPT_COLUMNS = ("job_id", "number", "started_at", "finished_at", "outcome", "error")


def _job_columns() -> tuple[str, ...]:
    """The columns the loader fills: those above, plus ``owner`` where the schema has it."""
    from offload.store.schema import jobs

    return JOB_COLUMNS + (("owner",) if "owner" in jobs.c else ())


def _jobs(n: int, seed: int = 7) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """n finished or queued jobs, ids in time order, one attempt row each."""
    rnd = random.Random(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    step_ms = 30 * 24 * 3600 * 1000 // max(n, 1)  # a month of jobs
    base_ms = int(start.timestamp() * 1000)
    owner = "owner" in _job_columns()
    for i in range(n):
        millis = base_ms + i * step_ms
        job_id = base32(millis, 10) + base32(rnd.getrandbits(80), 16)
        r = rnd.random()
        status, reason, result, error, outcome = (
            ("failed", "permanent_error", None, '{"type":"permanent_error","message":"no"}', "x")
            if r < 0.05
            else ("queued", None, None, None, None)
            if r < 0.06
            else ("succeeded", None, '{"n":1}', None, "succeeded")
        )
        created = dt.datetime.fromtimestamp(millis / 1000, dt.UTC).replace(tzinfo=None)
        finished = created + dt.timedelta(milliseconds=40) if status != "queued" else None
        ran = created + dt.timedelta(milliseconds=20) if status != "queued" else None
        job = (
            job_id, "demo.echo", status, reason, '{"n":1}', result, error, f"{i:032x}",
            0 if status == "queued" else 1, 3, 10.0, False, f"projects/p/tasks/{job_id}",
            created, finished or created, ran, finished,
        )  # fmt: skip
        if owner:
            job += ("anonymous",)
        attempt = (job_id, 1, ran, finished, outcome, None if outcome != "x" else "no")
        yield job, attempt


def _load_sqlite(path: Path, n: int) -> None:
    JobStore(f"sqlite:///{path}").create_schema()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    job_sql = (
        f"INSERT INTO offload_jobs ({','.join(_job_columns())}) "
        f"VALUES ({','.join('?' * len(_job_columns()))})"
    )
    att_sql = (
        f"INSERT INTO offload_attempts ({','.join(ATTEMPT_COLUMNS)}) "
        f"VALUES ({','.join('?' * len(ATTEMPT_COLUMNS))})"
    )

    def iso(value: Any) -> Any:
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value

    batch: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    for job, attempt in _jobs(n):
        batch.append(tuple(iso(v) for v in job))
        if attempt[2] is not None:
            attempts.append(tuple(iso(v) for v in attempt))
        if len(batch) >= 50_000:
            conn.executemany(job_sql, batch)
            conn.executemany(att_sql, attempts)
            conn.commit()
            batch, attempts = [], []
    conn.executemany(job_sql, batch)
    conn.executemany(att_sql, attempts)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") + "+00"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _load_postgres(url: str, schema: str, n: int) -> None:
    import psycopg

    JobStore(url).create_schema()
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as conn:
        conn.execute(f"SET search_path TO {schema}")
        with conn.cursor() as cur:
            jobs_buf, att_buf = io.StringIO(), io.StringIO()
            for job, attempt in _jobs(n):
                jobs_buf.write("\t".join(_copy_text(v) for v in job) + "\n")
                if attempt[2] is not None:
                    att_buf.write("\t".join(_copy_text(v) for v in attempt) + "\n")
            with cur.copy(f"COPY offload_jobs ({','.join(_job_columns())}) FROM STDIN") as copy:
                copy.write(jobs_buf.getvalue())
            with cur.copy(
                f"COPY offload_attempts ({','.join(ATTEMPT_COLUMNS)}) FROM STDIN"
            ) as copy:
                copy.write(att_buf.getvalue())
        conn.commit()
        conn.execute("ANALYZE offload_jobs")
        conn.execute("ANALYZE offload_attempts")
        conn.commit()


def _plans(url: str, job_id: str) -> dict[str, str]:
    """The query plans of the store's own SQL for list(status=failed) and get(id)."""
    store = JobStore(url)
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    store.list(status="failed", limit=21)
    store.get(job_id)
    event.remove(store.engine, "before_cursor_execute", capture)
    names = ("list status=failed", "get: job", "get: attempts")
    plans = {}
    with store.engine.connect() as conn:
        for name, (statement, params) in zip(names, seen, strict=False):
            if store.dialect == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                plans[name] = "; ".join(str(r[-1]) for r in rows)
            else:
                rows = conn.exec_driver_sql("EXPLAIN " + statement, params).all()
                scans = [str(r[0]).strip(" ->") for r in rows if "Scan" in str(r[0])]
                plans[name] = " / ".join(
                    " ".join(line.split("  (cost")[0].split()) for line in scans
                )
    store.dispose()
    return plans


def _time_reads(url: str, ids: list[str], n: int) -> dict[str, list[float]]:
    listing = build_request("GET", url + "/jobs?status=failed")
    gets = [build_request("GET", f"{url}/jobs/{i}") for i in ids]
    out = {}
    for name, make in (
        ("list", lambda _i: listing),
        ("get", lambda i: gets[i % len(gets)]),
    ):
        run_load(url, make, concurrency=1, total=30)  # warm up
        result = run_load(url, make, concurrency=1, total=n)
        if result.statuses.get(200, 0) != n:
            raise RuntimeError(f"{name}: {dict(result.statuses)}")
        out[name] = result.latencies()
    return out


def _sample_ids(n: int, k: int) -> list[str]:
    every = max(1, n // k)
    return [job[0] for i, (job, _a) in enumerate(_jobs(n)) if i % every == 0][:k]


@dataclass
class _Scale:
    """What one backend measured: reads through web at both sizes, the bare store calls."""

    big: dict[str, list[float]] = field(default_factory=dict)
    small: dict[str, list[float]] = field(default_factory=dict)
    direct: dict[str, list[float]] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)
    load_seconds: float = 0.0


def _time_store(url: str, ids: list[str], n: int) -> dict[str, list[float]]:
    """The store's own calls in this process, without HTTP: the database's share."""
    store = JobStore(url)
    out: dict[str, list[float]] = {"list": [], "get": []}
    try:
        for i in range(n + 30):
            t0 = time.perf_counter()
            store.list(status="failed", limit=21)
            t1 = time.perf_counter()
            store.get(ids[i % len(ids)])
            t2 = time.perf_counter()
            if i >= 30:
                out["list"].append(t1 - t0)
                out["get"].append(t2 - t1)
    finally:
        store.dispose()
    return out


def _measure(settings: Settings, backend: str, url_for: Any, reads: int) -> _Scale:
    """Load the big and the baseline store; time reads through web and the bare calls."""
    scale = _Scale()
    for n in (settings.store_rows, BASELINE_ROWS):
        url, loader = url_for(n)
        t0 = time.perf_counter()
        loader()
        ids = _sample_ids(n, 200)
        if n == settings.store_rows:
            scale.load_seconds = time.perf_counter() - t0
            scale.plans = _plans(url, ids[len(ids) // 2])
            scale.direct = _time_store(url, ids, reads)
        tmp = settings.tmp / "store" / f"{backend}-{n}"
        env = service_env(
            tmp,
            OFFLOAD_DATABASE_URL=url,
            OFFLOAD_TASKS_EMULATOR_HOST=f"127.0.0.1:{free_port()}",  # never called by reads
        )
        proc, web = start_gunicorn(tmp, "web.main:app", name="web", env=env)
        try:
            timed = _time_reads(web, ids, reads)
        finally:
            proc.stop()
        if n == settings.store_rows:
            scale.big = timed
        else:
            scale.small = timed
    return scale


def _p(values: list[float]) -> str:
    return f"p50 {fmt_ms(percentile(values, 0.5))}, p99 {fmt_ms(percentile(values, 0.99))}"


def _rows(backend: str, rows_n: int, s: _Scale) -> list[Row]:
    out = []
    for name, label, plan in (
        ("list", "GET /jobs?status=failed", s.plans.get("list status=failed", "")),
        (
            "get",
            "GET /jobs/<id>",
            f"{s.plans.get('get: job', '')} + {s.plans.get('get: attempts', '')}",
        ),
    ):
        p99 = percentile(s.big[name], 0.99)
        out.append(
            Row(
                "6 store",
                f"{backend}, {rows_n:,} jobs: {label}",
                _p(s.big[name]),
                _p(s.small[name]),
                f"{p99 / percentile(s.small[name], 0.99):.2f}",
                "p99 <= 5 ms",
                _verdict(p99 <= 0.005),
                f"the store call alone (no HTTP): {_p(s.direct[name])}; plan: {plan}",
            )
        )
    out[0] = Row(
        **{
            **out[0].__dict__,
            "note": out[0].note
            + f"; baseline: {BASELINE_ROWS:,} jobs; loaded in {s.load_seconds:.0f}s",
        }
    )
    return out


def _http_floor(settings: Settings, reads: int) -> Row:
    """GET on the bare Flask app: what any request costs before the store is asked."""
    tmp = settings.tmp / "store" / "bare"
    proc, url = start_gunicorn(tmp, "bench.bareapp:app", name="web", env=service_env(tmp))
    try:
        data = build_request("GET", url + "/jobs/01kf21m3008g1rxqzcj1wc0sfd")
        run_load(url, lambda _i: data, concurrency=1, total=30)
        result = run_load(url, lambda _i: data, concurrency=1, total=reads)
    finally:
        proc.stop()
    return Row(
        "6 store",
        "HTTP floor: bare Flask GET /jobs/<id>",
        _p(result.latencies()),
        note="same gunicorn flags, one request at a time, a new connection each (sync worker)",
    )


def run(settings: Settings) -> list[Row]:
    """Load SQLite and PostgreSQL with many jobs and time reads through web."""
    reads = 200 if settings.quick else 500
    n = settings.store_rows
    folder = settings.tmp / "store"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []

    progress(f"store: SQLite, loading {n:,} jobs")

    def sqlite_for(count: int) -> tuple[str, Any]:
        path = folder / f"jobs-{count}.db"
        return f"sqlite:///{path}", lambda: _load_sqlite(path, count)

    rows.append(_http_floor(settings, reads))
    rows += _rows("SQLite", n, _measure(settings, "SQLite", sqlite_for, reads))

    schema = f"bench_store_{int(time.time())}"
    try:
        import psycopg

        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True, connect_timeout=3
        )
    except Exception as e:  # no server: say so in the table instead of failing the run
        rows.append(Row("6 store", "PostgreSQL", "skipped", note=f"no server at 127.0.0.1: {e}"))
        return rows
    try:
        progress(f"store: PostgreSQL (schema {schema}), loading {n:,} jobs")

        def pg_for(count: int) -> tuple[str, Any]:
            name = f"{schema}_{count}"
            admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            admin.execute(f"CREATE SCHEMA {name}")
            url = f"{POSTGRES}?options=-csearch_path%3D{name}"
            return url, lambda: _load_postgres(url, name, count)

        rows += _rows("PostgreSQL", n, _measure(settings, "PostgreSQL", pg_for, reads))
    finally:
        for count in (n, BASELINE_ROWS):
            admin.execute(f"DROP SCHEMA IF EXISTS {schema}_{count} CASCADE")
        admin.close()
    return rows
