"""5. Cold start: process start to first 202 (web) and first 204 (worker), and peak memory.

Each service is started with the gunicorn flags the tests use (2 sync workers), timed
from just before the process is spawned to its first good answer, beside the bare Flask
app started the same way. After 200 more requests, the peak RSS (VmHWM) of each gunicorn
worker process is read from /proc.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    Row,
    Settings,
    gunicorn_argv,
    gunicorn_children,
    peak_rss_mib,
    progress,
    service_env,
    verdict,
)
from bench.loadgen import build_request, run_load
from offload.ids import new_job_id, task_id_for
from tests.processes import Proc, Stack, free_port

__all__ = ["run"]


def _status(port: int, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        head = s.recv(64)
    return int(head[9:12]) if head.startswith(b"HTTP/1.") else 0


def _first_answer(
    tmp: Path, app: str, name: str, env: dict[str, str], port: int, data: bytes, expected: int
) -> tuple[float, Proc]:
    """Seconds from spawning gunicorn to the first ``expected`` answer; the running process."""
    argv = gunicorn_argv(app, name=name, bind=f"127.0.0.1:{port}")
    t0 = time.perf_counter()
    proc = Proc(f"{name}-{app}", argv, env, tmp / f"{name}-{app}-{port}-{time.time_ns()}.out")
    while time.perf_counter() - t0 < 60:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{app} exited:\n{proc.output()}")
        try:
            status = _status(port, data)
        except OSError:
            status = 0
        if status == expected:
            return time.perf_counter() - t0, proc
        if status and status != 503:
            proc.stop()
            raise RuntimeError(f"{app} answered {status}, not {expected}")
        time.sleep(0.01)
    proc.stop()
    raise RuntimeError(f"{app} gave no {expected} within 60s")


def _push(port: int) -> bytes:
    job_id = new_job_id()  # unknown to the store: answered 204 without running anything
    return build_request(
        "POST",
        f"http://127.0.0.1:{port}/tasks/run",
        body=json.dumps({"job_id": job_id, "type": "demo.echo", "request_id": "cold"}).encode(),
        headers={
            "Content-Type": "application/json",
            "X-AppEngine-QueueName": "offload-jobs",
            "X-AppEngine-TaskName": task_id_for(job_id),
        },
    )


def _maker(label: str, port: int, data: bytes) -> Callable[[int], bytes]:
    if label == "worker":
        return lambda _i: _push(port)
    return lambda _i: data


def run(settings: Settings) -> list[Row]:
    """Time each service's cold start and read its workers' peak RSS."""
    reps = 1 if settings.quick else 3
    tmp = settings.tmp / "coldstart"
    tmp.mkdir(parents=True, exist_ok=True)
    stack = Stack(tmp=tmp, env=service_env(tmp))
    progress(f"coldstart: {reps} start(s) of each of bare, web, worker")
    times: dict[str, list[float]] = {"bare": [], "web": [], "worker": []}
    rss: dict[str, float] = {}
    try:
        stack.start_emulator()
        stack.migrate()
        env = dict(stack.env)
        worker_port = int(stack.worker_url.rsplit(":", 1)[1])
        submit = json.dumps({"type": "demo.echo", "payload": {}}).encode()
        for rep in range(reps):
            for label in ("bare", "web", "worker"):
                port = worker_port if label == "worker" else free_port()
                url = f"http://127.0.0.1:{port}"
                if label == "worker":
                    app, data, expected = "worker.main:app", _push(port), 204
                else:
                    app = "bench.bareapp:app" if label == "bare" else "web.main:app"
                    data = build_request(
                        "POST", url + "/jobs", body=submit,
                        headers={"Content-Type": "application/json"},
                    )  # fmt: skip
                    expected = 202
                name = "worker" if label == "worker" else "web"
                seconds, proc = _first_answer(tmp, app, name, env, port, data, expected)
                try:
                    times[label].append(seconds)
                    if rep == 0:
                        make = _maker(label, port, data)
                        run_load(url, make, concurrency=4, total=200)
                        kids = gunicorn_children(proc.pid)
                        rss[label] = max(peak_rss_mib(k) for k in kids)
                finally:
                    proc.stop()
    finally:
        stack.stop()

    bare = statistics.median(times["bare"])
    rows = []
    for label, answer in (("web", "202"), ("worker", "204")):
        t = statistics.median(times[label])
        rows.append(
            Row(
                "5 cold start",
                f"{label}: spawn -> first {answer}",
                f"{t:.2f} s",
                f"{bare:.2f} s",
                f"{t / bare:.2f}",
                "<= 2x bare",
                verdict(t <= 2 * bare),
                f"median of {reps}; baseline: bare Flask to first 202, same gunicorn flags",
            )
        )
    for label in ("web", "worker"):
        rows.append(
            Row(
                "5 cold start",
                f"{label}: peak RSS per gunicorn worker",
                f"{rss[label]:.1f} MiB",
                f"{rss['bare']:.1f} MiB",
                f"{rss[label] / rss['bare']:.2f}",
                note="VmHWM after 200 requests; baseline: bare Flask worker",
            )
        )
    return rows
