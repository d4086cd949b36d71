"""1. Submit: POST /jobs throughput and latency beside a bare Flask app (same gunicorn flags).

The queue is paused while web is measured, so the worker does not share the two cores
with it: this is the cost of accepting a job (validate, insert, CreateTask, answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bench.common import (
    QUEUE_PATH,
    Row,
    Settings,
    fmt_ms,
    percentile,
    progress,
    service_env,
    start_gunicorn,
    verdict,
)
from bench.loadgen import LoadResult, build_request, run_load
from tests.processes import Stack, make_stack

__all__ = ["run"]

BODY = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
HEADERS = {"Content-Type": "application/json"}
CONCURRENCIES = (1, 16, 64)


def _post(url: str) -> Callable[[int], bytes]:
    data = build_request("POST", url + "/jobs", body=BODY, headers=HEADERS)
    return lambda _i: data


def _load(url: str, concurrency: int, duration: float) -> LoadResult:
    run_load(url, _post(url), concurrency=concurrency, total=50)  # warm up
    return run_load(url, _post(url), concurrency=concurrency, duration=duration)


def _describe(r: LoadResult) -> str:
    lat = r.latencies()
    p50, p99 = fmt_ms(percentile(lat, 0.5)), fmt_ms(percentile(lat, 0.99))
    return f"{r.rate:,.0f} req/s, p50 {p50}, p99 {p99}"


def _check(r: LoadResult, expected: int, name: str) -> str:
    bad = r.count - r.statuses.get(expected, 0)
    if bad or r.errors:
        return f"{name}: {bad} answers not {expected}, {r.errors} connection errors"
    return ""


def run(settings: Settings) -> list[Row]:
    """Measure POST /jobs at each concurrency against the bare-Flask ceiling."""
    duration = 2.0 if settings.quick else 5.0
    tmp = settings.tmp / "submit"
    progress("submit: starting emulator, worker, web and the bare Flask app")
    stack: Stack = make_stack(tmp / "stack", env={"OFFLOAD_JOB_MODULES": "jobs"})
    rows: list[Row] = []
    try:
        stack.procs["bare"], bare_url = start_gunicorn(
            tmp, "bench.bareapp:app", name="web", env=service_env(tmp)
        )
        client = stack.tasks_client()
        client.pause_queue(name=QUEUE_PATH)
        for c in CONCURRENCIES:
            progress(f"submit: concurrency {c}, {duration:g}s each")
            bare = _load(bare_url, c, duration)
            web = _load(stack.web_url, c, duration)
            ratio = web.rate / bare.rate if bare.rate else 0.0
            target = verdict(ratio >= 0.5) if c == 16 else ""
            problems = "; ".join(
                p for p in (_check(web, 202, "web"), _check(bare, 202, "bare")) if p
            )
            cpu = web.cpu_seconds / web.elapsed
            rows.append(
                Row(
                    "1 submit",
                    f"POST /jobs, concurrency {c}",
                    _describe(web),
                    _describe(bare),
                    f"{ratio:.2f}",
                    ">= 0.50 of bare at c16" if c == 16 else "",
                    target,
                    problems or f"baseline: bare Flask 202; load generator used {cpu:.2f} CPU",
                )
            )
        if not settings.quick:
            rows += _configs(settings, stack, client)
        client.purge_queue(name=QUEUE_PATH)
        client.transport.close()
    finally:
        stack.stop()
    return rows


def _configs(settings: Settings, stack: Stack, client: object) -> list[Row]:
    """Other web gunicorn settings at concurrency 16, beside today's (sync, 2 workers)."""
    tmp = settings.tmp / "submit-configs"
    today = _load(stack.web_url, 16, 5.0)
    rows = []
    for label, workers, extra in (
        ("sync, 4 workers", 4, ()),
        ("gthread, 2 workers x 4 threads", 2, ("--threads", "4")),
    ):
        progress(f"submit: web with {label}")
        env = {**stack.env}
        proc, url = start_gunicorn(tmp, "web.main:app", name="web", env=env, workers=workers,
                                   extra=extra)  # fmt: skip
        try:
            other = _load(url, 16, 5.0)
        finally:
            proc.stop()
        rows.append(
            Row(
                "1 submit",
                f"POST /jobs c16, web {label}",
                _describe(other),
                _describe(today),
                f"{other.rate / today.rate:.2f}" if today.rate else "",
                note="baseline: web as configured today (sync, 2 workers); "
                + (_check(other, 202, "web") or "all 202"),
            )
        )
    return rows
