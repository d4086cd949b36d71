"""Batch submission and fan-out: POST /jobs/batch beside single POST /jobs, a fan-out
of 1,000 children beside the same 1,000 jobs submitted in batches, in one run.

Submits are measured with the queue paused (the worker does not share the cores), in
alternating turns so that load from elsewhere on the machine hits both. CPU is the
services' own (web's gunicorn workers and the emulator; for the end-to-end runs the
worker's too), per job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import requests
from sqlalchemy import create_engine, func, select

from bench.common import (
    QUEUE_PATH,
    Row,
    Settings,
    cpu_seconds,
    load_average,
    progress,
    service_pids,
)
from bench.loadgen import LoadResult, build_request, run_load
from offload.store.schema import jobs
from tests.processes import Stack, make_stack

__all__ = ["run"]

HEADERS = {"Content-Type": "application/json"}
SINGLE = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
BATCH = json.dumps({"jobs": [{"type": "demo.echo", "payload": {"n": i}} for i in range(100)]})
CHILDREN = 1000


def _maker(url: str, path: str, body: bytes) -> Callable[[int], bytes]:
    data = build_request("POST", url + path, body=body, headers=HEADERS)
    return lambda _i: data


def _cpu(stack: Stack, *names: str) -> float:
    pids: list[int] = []
    for name in names:
        master = stack.procs[name].pid
        pids += [master] if name == "emulator" else service_pids(master)
    return cpu_seconds(pids)


def _measure(
    stack: Stack, path: str, body: bytes, per_request: int, concurrency: int, duration: float
) -> tuple[float, float, str]:
    """Jobs per second, CPU seconds per job (web + emulator), and any bad answers."""
    make = _maker(stack.web_url, path, body)
    run_load(stack.web_url, make, concurrency=concurrency, total=4)  # warm up
    cpu0 = _cpu(stack, "web", "emulator")
    result: LoadResult = run_load(stack.web_url, make, concurrency=concurrency, duration=duration)
    cpu = _cpu(stack, "web", "emulator") - cpu0
    expected = 200 if per_request > 1 else 202
    bad = result.count - result.statuses.get(expected, 0)
    count = result.count * per_request
    return (
        count / result.elapsed,
        cpu / max(count, 1),
        f"{bad} answers not {expected}" if bad else "",
    )


def _submits(settings: Settings, stack: Stack) -> list[Row]:
    duration = 2.0 if settings.quick else 4.0
    client = stack.tasks_client()
    client.pause_queue(name=QUEUE_PATH)
    single: list[tuple[float, float, str]] = []
    batch: list[tuple[float, float, str]] = []
    try:
        for turn in range(1 if settings.quick else 3):
            progress(f"batch: turn {turn + 1}, single then batch (load {load_average()})")
            single.append(_measure(stack, "/jobs", SINGLE, 1, 16, duration))
            batch.append(_measure(stack, "/jobs/batch", BATCH.encode(), 100, 2, duration))
    finally:
        client.purge_queue(name=QUEUE_PATH)
        client.resume_queue(name=QUEUE_PATH)
        client.transport.close()
    s = sorted(single)[len(single) // 2]
    b = sorted(batch)[len(batch) // 2]
    return [
        Row(
            "batch",
            "POST /jobs/batch (100 per request, c2): jobs/s",
            f"{b[0]:,.0f}",
            f"{s[0]:,.0f}",
            f"{b[0] / s[0]:.2f}" if s[0] else "",
            note="baseline: single POST /jobs at c16, same stack, alternating turns (median); "
            + (b[2] or s[2] or "all answers as expected"),
        ),
        Row(
            "batch",
            "POST /jobs/batch: CPU per job (web + emulator)",
            f"{b[1] * 1000:.2f} ms",
            f"{s[1] * 1000:.2f} ms",
            f"{b[1] / s[1]:.2f}" if s[1] else "",
            note="baseline: single POST /jobs",
        ),
    ]


def _count(url: str, where: object) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs).where(where)).scalar())
    finally:
        engine.dispose()


def _wait_all(stack: Stack, where: object, total: int, timeout: float) -> None:
    url = stack.env["OFFLOAD_DATABASE_URL"]
    end = time.monotonic() + timeout
    while _count(url, where) < total:
        if time.monotonic() > end:
            raise TimeoutError(f"only {_count(url, where)} of {total} jobs finished")
        time.sleep(0.2)


def _fanout(stack: Stack, timeout: float) -> tuple[float, float]:
    """1,000 children of one demo.fanout, end to end: children/s, CPU per child."""
    cpu0, t0 = _cpu(stack, "web", "worker", "emulator"), time.perf_counter()
    body = {"type": "demo.fanout", "payload": {"children": CHILDREN, "child_seconds": 0}}
    parent = requests.post(f"{stack.web_url}/jobs", json=body, timeout=30).json()["id"]
    while True:
        job = requests.get(f"{stack.web_url}/jobs/{parent}?wait=30", timeout=40).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"the fan-out did not finish: {job['status']}")
    if job["status"] != "succeeded":
        raise RuntimeError(f"the fan-out ended {job['status']}: {job['error']}")
    elapsed = time.perf_counter() - t0
    return CHILDREN / elapsed, (_cpu(stack, "web", "worker", "emulator") - cpu0) / CHILDREN


def _batched(stack: Stack, timeout: float) -> tuple[float, float]:
    """The same 1,000 demo.sleep jobs submitted in batches of 100, end to end."""
    items = [{"type": "demo.sleep", "payload": {"seconds": 0}}] * 100
    before = _count(stack.env["OFFLOAD_DATABASE_URL"], jobs.c.status == "succeeded")
    cpu0, t0 = _cpu(stack, "web", "worker", "emulator"), time.perf_counter()
    for _ in range(CHILDREN // 100):
        r = requests.post(f"{stack.web_url}/jobs/batch", json={"jobs": items}, timeout=60)
        r.raise_for_status()
    _wait_all(stack, jobs.c.status == "succeeded", before + CHILDREN, timeout)
    elapsed = time.perf_counter() - t0
    return CHILDREN / elapsed, (_cpu(stack, "web", "worker", "emulator") - cpu0) / CHILDREN


def run(settings: Settings) -> list[Row]:
    """Batch beside single submits; a fan-out of 1,000 beside 1,000 batched jobs."""
    tmp = settings.tmp / "batch"
    progress("batch: starting emulator, worker and web")
    stack = make_stack(tmp / "stack", env={"OFFLOAD_JOB_MODULES": "jobs"})
    try:
        rows = _submits(settings, stack)
        progress(f"batch: a fan-out of {CHILDREN} children, then {CHILDREN} batched jobs")
        fan = _fanout(stack, 600)
        base = _batched(stack, 600)
    finally:
        stack.stop()
    rows += [
        Row(
            "batch",
            f"fan-out of {CHILDREN} demo.sleep children, end to end: children/s",
            f"{fan[0]:,.0f}",
            f"{base[0]:,.0f}",
            f"{fan[0] / base[0]:.2f}" if base[0] else "",
            note=f"baseline: the same {CHILDREN} jobs submitted with POST /jobs/batch",
        ),
        Row(
            "batch",
            "fan-out: CPU per child (web + worker + emulator)",
            f"{fan[1] * 1000:.2f} ms",
            f"{base[1] * 1000:.2f} ms",
            f"{fan[1] / base[1]:.2f}" if base[1] else "",
            note="baseline: per batched job",
        ),
    ]
    return rows
