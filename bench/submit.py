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
    cpu_seconds,
    fmt_ms,
    load_average,
    percentile,
    progress,
    service_env,
    service_pids,
    start_gunicorn,
    verdict,
)
from bench.loadgen import LoadResult, build_request, run_load
from tests.processes import Stack, make_stack

__all__ = ["run"]

BODY = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
HEADERS = {"Content-Type": "application/json"}
CONCURRENCIES = (1, 16, 64)


WEB_THREADS = ("--threads", "128")


def _post(url: str) -> Callable[[int], bytes]:
    data = build_request("POST", url + "/jobs", body=BODY, headers=HEADERS)
    return lambda _i: data


def _load(url: str, concurrency: int, duration: float, master: int) -> tuple[LoadResult, float]:
    """The load run, and the server's CPU seconds per request during it."""
    run_load(url, _post(url), concurrency=concurrency, total=50)  # warm up
    pids = service_pids(master)
    cpu0 = cpu_seconds(pids)
    result = run_load(url, _post(url), concurrency=concurrency, duration=duration)
    return result, (cpu_seconds(pids) - cpu0) / max(result.count, 1)


def _describe(r: LoadResult, cpu: float) -> str:
    lat = r.latencies()
    p50, p99 = fmt_ms(percentile(lat, 0.5)), fmt_ms(percentile(lat, 0.99))
    return f"{r.rate:,.0f} req/s, p50 {p50}, p99 {p99}, CPU {cpu * 1000:.2f} ms/req"


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
        # The same gunicorn settings as web as deployed (gthread, 2 x 128: tests/processes.py).
        bare_proc, bare_url = start_gunicorn(
            tmp, "bench.bareapp:app", name="web", env=service_env(tmp), extra=WEB_THREADS
        )
        stack.procs["bare"] = bare_proc
        web_master = stack.procs["web"].pid
        client = stack.tasks_client()
        client.pause_queue(name=QUEUE_PATH)
        for c in CONCURRENCIES:
            progress(f"submit: concurrency {c}, {duration:g}s each (load {load_average()})")
            bare, bare_cpu = _load(bare_url, c, duration, bare_proc.pid)
            web, web_cpu = _load(stack.web_url, c, duration, web_master)
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
                    _describe(web, web_cpu),
                    _describe(bare, bare_cpu),
                    f"{ratio:.2f}",
                    ">= 0.50 of bare at c16" if c == 16 else "",
                    target,
                    problems
                    or f"baseline: bare Flask 202, gthread 2 x 128 like web; load generator "
                    f"used {cpu:.2f} CPU",
                )
            )
            if c == 16:
                rows.append(
                    Row(
                        "1 submit",
                        "POST /jobs c16, requests per CPU-second of web",
                        f"{1 / web_cpu:,.0f}" if web_cpu else "n/a",
                        f"{1 / bare_cpu:,.0f}" if bare_cpu else "n/a",
                        f"{bare_cpu / web_cpu:.2f}" if web_cpu else "",
                        note="the gunicorn workers' own CPU time: steadier than wall-clock "
                        "rates on a shared machine",
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
    """Other gunicorn settings at concurrency 16, beside web as deployed (gthread 2 x 128).

    Both run at once and are measured in turns (three rounds of 3 s each, medians), so a
    burst of load from elsewhere on the machine hits both.
    """
    tmp = settings.tmp / "submit-configs"
    rows = []
    for label, app, workers, extra in (
        ("web sync, 2 workers", "web.main:app", 2, ()),
        ("web gthread, 2 workers x 4 threads", "web.main:app", 2, ("--threads", "4")),
        ("bare Flask sync, 2 workers", "bench.bareapp:app", 2, ()),
    ):
        progress(f"submit: {label}, in turns with web as deployed")
        proc, url = start_gunicorn(
            tmp, app, name="web", env=dict(stack.env), workers=workers, extra=extra
        )
        today: list[tuple[LoadResult, float]] = []
        other: list[tuple[LoadResult, float]] = []
        try:
            for _ in range(3):
                today.append(_load(stack.web_url, 16, 3.0, stack.procs["web"].pid))
                other.append(_load(url, 16, 3.0, proc.pid))
        finally:
            proc.stop()
        t, o = _median(today), _median(other)
        rows.append(
            Row(
                "1 submit",
                f"POST /jobs c16, {label}",
                _describe(*o),
                _describe(*t),
                f"{o[0].rate / t[0].rate:.2f}" if t[0].rate else "",
                note="baseline: web as deployed (gthread, 2 workers x 128 threads), measured "
                "in turns; " + (_check(o[0], 202, "web") or "all 202"),
            )
        )
    return rows


def _median(runs: list[tuple[LoadResult, float]]) -> tuple[LoadResult, float]:
    """The run with the median rate."""
    return sorted(runs, key=lambda r: r[0].rate)[len(runs) // 2]
