"""One request's story through real processes: web, emulator, worker, then ``offload logs``."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from offload.logs import LABELS, SPAN_ID, TRACE
from offload.logsearch import LocalTail
from tests.conftest import PROJECT, ROOT, Stack, make_stack

pytestmark = pytest.mark.e2e

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def offload_logs(log_dir: Path, request_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``offload logs`` as an operator runs it: a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "offload.cli", "logs", request_id, "--log-dir", str(log_dir),
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def story(log_dir: Path, request_id: str, until: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The request's entries once a line matching ``until`` is among them."""
    end = time.monotonic() + timeout
    while True:
        result = offload_logs(log_dir, request_id, "--json")
        entries = [json.loads(line) for line in result.stdout.splitlines()]
        if any(re.search(until, e["message"]) for e in entries) or time.monotonic() > end:
            return entries
        time.sleep(0.2)


def wait_for(stack: Stack, job_id: str, status: str) -> dict[str, Any]:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        job: dict[str, Any] = requests.get(f"{stack.web_url}/jobs/{job_id}", timeout=5).json()
        if job["status"] == status:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never {status}\n{stack.outputs()}")


def in_order(entries: list[dict[str, Any]], expected: list[tuple[str, str]]) -> list[str]:
    """The (service, message pattern) steps missing from ``entries``, matched in order."""
    lines = iter((e[LABELS]["service"], e["message"]) for e in entries)
    missing = []
    for service, pattern in expected:
        for got_service, message in lines:
            if got_service == service and re.search(pattern, message):
                break
        else:
            missing.append(f"{service}: {pattern}")
            lines = iter((e[LABELS]["service"], e["message"]) for e in entries)
    return missing


def test_a_flaky_jobs_whole_story_is_one_command_away(stack: Stack) -> None:
    rid = f"flaky-{time.time_ns()}"
    r = requests.post(
        f"{stack.web_url}/jobs",
        json={"type": "demo.flaky", "payload": {"failures": 2}},
        headers={"X-Request-ID": rid, "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
        timeout=10,
    )
    assert r.status_code == 202 and r.headers["X-Request-ID"] == rid
    job_id = r.json()["id"]
    assert r.json()["request_id"] == rid
    wait_for(stack, job_id, "succeeded")

    entries = story(stack.log_dir, rid, until=r"attempt 3 -> 204")
    task = f"[0-9a-f]{{8}}-{job_id}"
    missing = in_order(
        entries,
        [
            ("emulator", rf"^task {task} created"),
            # web logs "accepted" (and its access line) once CreateTask has answered, and
            # the emulator may push the task before that: both are checked apart, below.
            ("worker", r"^attempt 1 started \(run 1 of 5\)"),
            ("worker", r"^attempt 1 failed transiently"),
            ("worker", r"^POST /tasks/run 500$"),
            ("emulator", r"attempt 1 -> 500"),
            ("worker", r"^attempt 2 started \(run 2 of 5\)"),
            ("worker", r"^attempt 2 failed transiently"),
            ("emulator", r"attempt 2 -> 500"),
            ("worker", r"^attempt 3 started \(run 3 of 5\)"),
            ("worker", rf"^job {job_id} succeeded"),
            ("worker", r"^POST /tasks/run 204$"),
            ("emulator", r"attempt 3 -> 204"),
        ],
    )
    assert not missing, "\n".join(missing) + "\n" + "\n".join(e["message"] for e in entries)
    accepted = rf"job {job_id} accepted \(demo\.flaky\), task .*/tasks/{task} created"
    assert not in_order(entries, [("web", accepted), ("web", r"^POST /jobs 202$")])

    times = [e["time"] for e in entries]
    assert times == sorted(times)
    assert {e[LABELS]["service"] for e in entries} == {"web", "emulator", "worker"}
    for e in entries:
        assert e[LABELS]["request_id"] == rid
        assert e[TRACE] == f"projects/{PROJECT}/traces/{TRACE_ID}", e
        assert re.fullmatch(r"[0-9a-f]{16}", e[SPAN_ID])
    for e in entries:
        labels = e[LABELS]
        if labels["service"] == "worker":
            assert labels["job_id"] == job_id and labels["job_type"] == "demo.flaky"
            assert re.fullmatch(task, labels["task"]) and labels["attempt"] in "123"
        if labels["service"] == "emulator":
            assert re.fullmatch(task, labels["task"])
            assert labels.get("attempt", "") in "123"  # none on the "task created" line
    web_accepted = next(e for e in entries if "accepted" in e["message"])
    assert web_accepted[LABELS]["job_id"] == job_id
    assert web_accepted[LABELS]["job_type"] == "demo.flaky"
    access = [e for e in entries if "httpRequest" in e]
    assert [(e[LABELS]["service"], e["httpRequest"]["status"]) for e in access] == [
        ("web", 202), ("worker", 500), ("worker", 500), ("worker", 204)
    ]  # fmt: skip
    assert all(e[LABELS]["job_id"] == job_id for e in access)

    readable = offload_logs(stack.log_dir, rid)
    assert readable.returncode == 0
    assert len(readable.stdout.splitlines()) == len(entries)
    assert "attempt 2 failed transiently" in readable.stdout


def _raw_post(port: int, request_id: bytes) -> bytes:
    body = b'{"type": "demo.echo", "payload": {}}'
    request = (
        b"POST /jobs HTTP/1.1\r\nHost: web\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nX-Request-ID: " + request_id + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _wait_for_line(stack: Stack, request_id: str, timeout: float = 15.0) -> None:
    """Until web's log file holds the access line of ``request_id`` (its last line)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in (stack.log_dir / "web.log").read_text(errors="replace").splitlines():
            if request_id in line and '"httpRequest"' in line:
                return
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id} in web.log")


HOSTILE = [
    b"hostile-lf\nInjected: 1",  # gunicorn refuses the request before the app
    b"hostile-cr\rInjected: 1",
    b"hostile-fold\r\n folded",
    b'hostile-"quoted"-\\-{}',
    b"hostile-long-" + b"x" * 7000,
    b"hostile-huge-" + b"y" * 10_000,
]


@pytest.mark.parametrize("value", HOSTILE, ids=["lf", "cr", "fold", "quotes", "7kB", "10kB"])
def test_a_hostile_request_id_is_replaced_or_refused_and_never_logged(
    stack: Stack, value: bytes
) -> None:
    raw = _raw_post(int(stack.web_url.rsplit(":", 1)[1]), value)
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1")
    status = int(head.split(" ", 2)[1])
    if status == 202:
        echoed = re.search(r"(?im)^X-Request-ID: (.*)$", head)
        assert echoed and re.fullmatch(r"[0-9a-f]{32}", echoed.group(1).strip())
        # Its lines are in the files once its access line (written last) is.
        _wait_for_line(stack, echoed.group(1).strip())
    else:
        assert status in (400, 431)  # refused by gunicorn, the app never saw it
        time.sleep(0.3)  # gunicorn's own refusal line, if any: nothing to wait for
    marker = value.split(b"-")[1].decode()
    for path in [*stack.log_dir.iterdir(), *stack.tmp.glob("*.out")]:
        text = path.read_text(errors="replace")
        assert f"hostile-{marker}" not in text, path


def test_every_line_of_every_process_is_a_cloud_logging_json_object(stack: Stack) -> None:
    # Exercise an error path or two first, so the files hold more than start-up lines.
    requests.get(f"{stack.web_url}/nowhere", timeout=5)
    bad = requests.post(f"{stack.web_url}/jobs", data=b"{", timeout=5)
    _wait_for_line(stack, bad.headers["X-Request-ID"])
    outputs = {path.name: path for path in stack.tmp.glob("*.out")}
    files = {path.name: path for path in stack.log_dir.iterdir() if ".log" in path.name}
    assert {"emulator.out", "web.out", "worker.out"} <= set(outputs)
    assert {"emulator.log", "web.log", "worker.log"} <= set(files)
    for name, path in {**outputs, **files}.items():
        if name.endswith(".lock"):
            continue
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            entry = json.loads(raw)  # stdout and stderr too: nothing but JSON lines
            where = f"{name}:{number}: {raw[:300]}"
            assert isinstance(entry, dict), where
            assert entry["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, where
            assert isinstance(entry["message"], str) and entry["time"].endswith("Z"), where
            labels = entry[LABELS]
            assert labels["service"] in {"web", "worker", "emulator"}, where
            assert all(isinstance(v, str) for v in labels.values()), where
            if "httpRequest" in entry:
                http = entry["httpRequest"]
                assert {"requestMethod", "requestUrl", "status", "latency", "userAgent",
                        "requestSize", "responseSize"} <= set(http), where  # fmt: skip
                assert labels["request_id"] and entry[TRACE].startswith(
                    f"projects/{PROJECT}/traces/"
                ), where


def test_logs_are_found_across_rotated_files_of_several_gunicorn_workers(tmp_path: Path) -> None:
    stack = make_stack(
        tmp_path / "rot",
        env={"OFFLOAD_LOG_FILE_MAX_BYTES": "4000", "OFFLOAD_LOG_FILE_BACKUPS": "200"},
    )
    try:
        rids = [f"rot-{n}-{time.time_ns()}" for n in range(8)]
        jobs = []
        for rid in rids:
            r = requests.post(
                f"{stack.web_url}/jobs",
                json={"type": "demo.echo", "payload": {"n": rid}},
                headers={"X-Request-ID": rid},
                timeout=10,
            )
            jobs.append(r.json()["id"])
        for job_id in jobs:
            wait_for(stack, job_id, "succeeded")
        assert len(list(stack.log_dir.glob("web.log.*"))) > 2  # rotated, several times
        for rid in rids:
            tail = LocalTail(str(stack.log_dir), rid)
            entries: list[dict[str, Any]] = []
            end = time.monotonic() + 30
            while len(entries) < 7 and time.monotonic() < end:
                entries += tail.poll()
                time.sleep(0.05)
            services = [e[LABELS]["service"] for e in entries]
            # emulator: "task created" and one dispatch
            assert services.count("web") == 2 and services.count("emulator") == 2, entries
            assert services.count("worker") == 3, entries  # started, succeeded, access line
    finally:
        stack.stop()
