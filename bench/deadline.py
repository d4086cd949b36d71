"""4. Deadlines: how late DeadlineExceededError arrives, and how soon the worker answers.

Jobs of ``demo.sleep`` and ``demo.busy`` run far longer than a tight ``deadline_seconds``,
so every attempt (three per job) ends by its deadline. From the JSON log lines:

* error late = time of "attempt N: deadline ... exceeded" − time of "attempt N ... started"
  − budget (the worker's own lines; the Deadline is built just before "started");
* answer after budget = time the emulator logged the worker's answer ("dispatch ... ->
  500") − time of "started" − budget: the answer is on the wire by then.

Baselines: a bare ``setitimer`` SIGALRM in this process (the floor the OS and CPython give,
same sleep and busy loops), and the emulator-to-worker round trip of a no-op job.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.common import Row, Settings, fmt_ms, load_average, percentile, progress, verdict
from bench.loadgen import build_request, run_load
from tests.processes import make_stack

__all__ = ["run"]

BUDGET = 0.25
_EXCEEDED = re.compile(r"^attempt (\d+): deadline of [\d.]+s exceeded after")
_STARTED = re.compile(r"^attempt (\d+) started \(run \d+ of \d+\), budget")
_RECORDED = re.compile(r"^(asking Cloud Tasks to retry|job \S+ failed after its last attempt)")
_DISPATCH = re.compile(r"^dispatch \S+ attempt (\d+) -> (\d+) in ([\d.]+) ms")


class _Alarm(Exception):
    pass


def _raw_alarm_lateness(kind: str, n: int, budget: float) -> list[float]:
    """Lateness of a bare SIGALRM raised into time.sleep or a Python loop (the floor)."""
    fired_at = 0.0

    def on_alarm(_s: int, _f: FrameType | None) -> None:
        nonlocal fired_at
        fired_at = time.perf_counter()
        raise _Alarm

    previous = signal.signal(signal.SIGALRM, on_alarm)
    late = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, budget)
            try:
                if kind == "sleep":
                    time.sleep(budget * 20)
                else:
                    while time.perf_counter() < start + budget * 20:
                        pass
            except _Alarm:
                late.append(time.perf_counter() - start - budget)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return late


def _stamp(line: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


def _lines(log_dir: Path, service: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted(log_dir.glob(f"{service}*.log*")):
        for raw in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


def _wait_done(db: Path, ids: list[str], timeout: float) -> None:
    end = time.monotonic() + timeout
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    marks = ",".join("?" * len(ids))
    try:
        while time.monotonic() < end:
            left = conn.execute(
                f"SELECT count(*) FROM offload_jobs WHERE id IN ({marks}) "
                "AND status NOT IN ('failed', 'succeeded', 'cancelled')",
                ids,
            ).fetchone()[0]
            if left == 0:
                return
            time.sleep(0.2)
    finally:
        conn.close()
    raise RuntimeError(f"jobs not finished after {timeout}s")


def _submit(url: str, body: dict[str, Any], n: int) -> list[str]:
    data = build_request(
        "POST", url + "/jobs", body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    result = run_load(url, lambda _i: data, concurrency=min(n, 4), total=n, keep_bodies=True)
    if result.statuses.get(202, 0) != n:
        raise RuntimeError(f"submit {body['type']}: {dict(result.statuses)}")
    return [json.loads(r.body)["id"] for r in result.replies]


def _three(values: list[float]) -> str:
    return (
        f"p50 {fmt_ms(percentile(values, 0.5))}, p99 {fmt_ms(percentile(values, 0.99))}, "
        f"max {fmt_ms(max(values))}"
    )


def run(settings: Settings) -> list[Row]:
    """Run deadline-bound jobs and read their timings from the logs."""
    jobs_per_type = 20 if settings.quick else 50
    tmp = settings.tmp / "deadline"
    progress(f"deadline: starting the stack; {jobs_per_type} jobs of each type, 3 attempts each")
    stack = make_stack(tmp, env={"OFFLOAD_JOB_MODULES": "jobs"})
    db = tmp / "offload.db"
    raw: dict[str, list[float]] = {}
    ids: dict[str, list[str]] = {}
    try:
        echo_ids = []
        for _ in range(30 if settings.quick else 50):  # one at a time: no queueing
            echo_ids += _submit(stack.web_url, {"type": "demo.echo", "payload": {}}, 1)
            _wait_done(db, echo_ids[-1:], 30)
        for kind in ("sleep", "busy"):
            body = {
                "type": f"demo.{kind}",
                "payload": {"seconds": 5},
                "deadline_seconds": BUDGET,
            }
            failure: list[BaseException] = []

            def batch(
                kind: str = kind,
                body: dict[str, Any] = body,
                failure: list[BaseException] = failure,
            ) -> None:
                try:
                    ids[kind] = _submit(stack.web_url, body, jobs_per_type)
                    _wait_done(db, ids[kind], 60 + jobs_per_type * 3 * (BUDGET + 0.2))
                except BaseException as e:
                    failure.append(e)

            # The baseline runs meanwhile in this process's main thread, on the same
            # loaded cores, so both see the same scheduling delays.
            thread = threading.Thread(target=batch)
            thread.start()
            raw[kind] = []
            while thread.is_alive():
                raw[kind] += _raw_alarm_lateness(kind, 1, 0.05)
            thread.join()
            if failure:
                raise failure[0]
            progress(f"deadline: demo.{kind} done (load {load_average()})")
    finally:
        stack.stop()

    started: dict[tuple[str, int], float] = {}
    exceeded: dict[tuple[str, int], float] = {}
    recorded: dict[tuple[str, int], float] = {}
    for line in _lines(stack.log_dir, "worker"):
        labels = line.get("logging.googleapis.com/labels", {})
        key = (labels.get("job_id", ""), int(labels.get("attempt", 0) or 0))
        message = line.get("message", "")
        if _STARTED.match(message):
            started[key] = _stamp(line)
        elif _EXCEEDED.match(message):
            exceeded[key] = _stamp(line)
        elif _RECORDED.match(message):
            recorded[key] = _stamp(line)
    answered: dict[tuple[str, int], float] = {}
    noop_rtt: list[float] = []
    echo = set(echo_ids)
    for line in _lines(stack.log_dir, "emulator"):
        m = _DISPATCH.match(line.get("message", ""))
        if not m:
            continue
        labels = line.get("logging.googleapis.com/labels", {})
        job_id = labels.get("task", "-").split("-", 1)[1]
        answered[(job_id, int(m.group(1)))] = _stamp(line)
        if job_id in echo:
            noop_rtt.append(float(m.group(3)) / 1000)

    rows = []
    for kind in ("sleep", "busy"):
        mine = set(ids[kind])
        keys = [k for k in exceeded if k[0] in mine and k in started]
        late = [exceeded[k] - started[k] - BUDGET for k in keys]
        answer = [answered[k] - started[k] - BUDGET for k in keys if k in answered]
        record = [recorded[k] - exceeded[k] for k in keys if k in recorded]
        wire = [answered[k] - recorded[k] for k in keys if k in answered and k in recorded]
        if not late or not answer:
            raise RuntimeError(f"no deadline lines found for demo.{kind}")
        rows.append(
            Row(
                "4 deadline",
                f"demo.{kind}: DeadlineExceededError late by",
                _three(late),
                _three(raw[kind]),
                f"{percentile(late, 0.99) / max(percentile(raw[kind], 0.99), 1e-6):.1f}",
                "p99 <= 20 ms",
                verdict(percentile(late, 0.99) <= 0.020),
                f"{len(late)} attempts of {len(mine)} jobs, budget {BUDGET:g}s; baseline: "
                f"{len(raw[kind])} bare setitimer alarms in the bench process meanwhile",
            )
        )
        rows.append(
            Row(
                "4 deadline",
                f"demo.{kind}: answer on the wire after budget",
                _three(answer),
                _three(noop_rtt),
                f"{percentile(answer, 0.99) / max(percentile(noop_rtt, 0.99), 1e-6):.1f}",
                "p99 <= 200 ms",
                verdict(percentile(answer, 0.99) <= 0.200),
                f"{len(answer)} answers (500 = retry, last 204); of which p50/p99: "
                f"recording the attempt {fmt_ms(percentile(record, 0.5))}/"
                f"{fmt_ms(percentile(record, 0.99))}, then to the wire "
                f"{fmt_ms(percentile(wire, 0.5))}/{fmt_ms(percentile(wire, 0.99))}; "
                "baseline: dispatch round trip of a lone no-op job",
            )
        )
    return rows
