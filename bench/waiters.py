"""7. Waiters: POST /jobs throughput with 200 open event streams and long-polls, beside none.

web runs as deployed (4 gthread processes x 128 threads). The queue is paused, so the
waited-on jobs stay queued and every waiter stays open for the whole measurement (the
streams get keep-alives, the long-polls wait up to 60 s); the submits of the load run
append events, which the hub of each web process reads once per poll. The baseline is
the median of the rounds without waiters, interleaved with the rounds with them (the
machine is shared, so one round against one is noise).
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Callable

from bench.common import (
    QUEUE_PATH,
    Row,
    Settings,
    cpu_seconds,
    load_average,
    progress,
    service_pids,
    verdict,
)
from bench.loadgen import build_request, run_load
from tests.processes import make_stack

__all__ = ["run"]

BODY = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
HEADERS = {"Content-Type": "application/json"}
WAITERS = 200
CONCURRENCY = 16


def _post(url: str) -> Callable[[int], bytes]:
    data = build_request("POST", url + "/jobs", body=BODY, headers=HEADERS)
    return lambda _i: data


class _Waiter:
    """One open GET that waits: an event stream or a long-poll, on a raw socket."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=90)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.received = b""
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
        except OSError:
            pass
        self.closed = True

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _submits(url: str, duration: float, pids: list[int]) -> tuple[float, float]:
    """Submits per second at CONCURRENCY, and web's CPU seconds per submit."""
    cpu0 = cpu_seconds(pids)
    result = run_load(url, _post(url), concurrency=CONCURRENCY, duration=duration)
    bad = result.count - result.statuses.get(202, 0)
    if bad or result.errors:
        raise RuntimeError(f"{bad} submits not 202, {result.errors} connection errors")
    return result.rate, (cpu_seconds(pids) - cpu0) / max(result.count, 1)


def _open_waiters(url: str) -> tuple[list[str], list[_Waiter]]:
    """WAITERS new queued jobs, each waited on: odd ones by a stream, even by a long-poll."""
    port = int(url.rsplit(":", 1)[1])
    replies = run_load(url, _post(url), concurrency=8, total=WAITERS, keep_bodies=True).replies
    ids = [json.loads(r.body)["id"] for r in replies]
    return ids, [
        _Waiter(port, f"/jobs/{job_id}/events" if i % 2 else f"/jobs/{job_id}?wait=60")
        for i, job_id in enumerate(ids)
    ]


def _end_waiters(url: str, ids: list[str], waiters: list[_Waiter]) -> None:
    """Cancel the waited-on jobs: every stream and long-poll must answer and close."""
    deletes = [build_request("DELETE", f"{url}/jobs/{job_id}") for job_id in ids]
    run_load(url, lambda i: deletes[i], concurrency=8, total=len(deletes))
    end = time.monotonic() + 30
    while time.monotonic() < end and not all(w.closed for w in waiters):
        time.sleep(0.1)
    for w in waiters:
        w.close()


def _still_open(waiters: list[_Waiter]) -> int:
    streams_ok = sum(1 for w in waiters[1::2] if b"200 OK" in w.received and not w.closed)
    polls_ok = sum(1 for w in waiters[0::2] if not w.closed)
    return streams_ok + polls_ok


def run(settings: Settings) -> list[Row]:
    """Rounds without and with 200 waiters (half streams, half long-polls), interleaved."""
    duration = 3.0 if settings.quick else 6.0
    rounds = 2 if settings.quick else 3
    progress("waiters: starting emulator, worker and web (4 processes x 128 threads)")
    stack = make_stack(settings.tmp / "waiters", env={"OFFLOAD_JOB_MODULES": "jobs"})
    without: list[tuple[float, float]] = []
    with_: list[tuple[float, float]] = []
    open_at_end: list[int] = []
    ended: list[int] = []
    try:
        # make_stack's web has 2 processes; restart it as deployed (app.yaml).
        stack.procs.pop("web").stop()
        stack.start_service("web", processes=4, threads=128)
        url = stack.web_url
        pids = service_pids(stack.procs["web"].pid)
        stack.tasks_client().pause_queue(name=QUEUE_PATH)
        run_load(url, _post(url), concurrency=CONCURRENCY, total=200)  # warm up
        for k in range(rounds):
            progress(f"waiters: round {k + 1}, no waiters, {duration:g}s (load {load_average()})")
            without.append(_submits(url, duration, pids))
            ids, waiters = _open_waiters(url)
            try:
                progress(f"waiters: round {k + 1}, {len(waiters)} waiters open")
                with_.append(_submits(url, duration, pids))
                open_at_end.append(_still_open(waiters))
            finally:
                _end_waiters(url, ids, waiters)
            ended.append(sum(1 for w in waiters if b'"status":"cancelled"' in w.received))
        without.append(_submits(url, duration, pids))
    finally:
        stack.stop()
    base_rate = statistics.median(r for r, _ in without)
    rate = statistics.median(r for r, _ in with_)
    base_cpu = statistics.median(c for _, c in without)
    cpu = statistics.median(c for _, c in with_)
    ratio = rate / base_rate if base_rate else 0.0
    all_open = all(n == WAITERS for n in open_at_end)
    return [
        Row(
            "waiters",
            f"POST /jobs at concurrency {CONCURRENCY} with {WAITERS} waiters open (median "
            f"of {len(with_)})",
            f"{rate:,.0f} req/s, web CPU {cpu * 1000:.2f} ms/req",
            f"no waiters (median of {len(without)}): {base_rate:,.0f} req/s, "
            f"{base_cpu * 1000:.2f} ms/req",
            f"{ratio:.2f}",
            ">= 0.80",
            verdict(ratio >= 0.8 and all_open),
            "rounds without: "
            + ", ".join(f"{r:,.0f}" for r, _ in without)
            + "; with: "
            + ", ".join(f"{r:,.0f}" for r, _ in with_)
            + f" req/s; waiters open at each round's end: {open_at_end}, told of the cancel: "
            + f"{ended}",
        )
    ]
