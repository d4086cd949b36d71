"""`offload run` (what `make run` starts): three processes, prefixed output, clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def _descendants(pid: int) -> set[int]:
    children: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            children |= {child} | _descendants(child)
    return children


def test_run_starts_all_three_runs_a_job_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    ports = {k: free_port() for k in ("WEB", "WORKER", "EMULATOR", "EMULATOR_HTTP")}
    env = {
        **os.environ,
        **{f"OFFLOAD_{k}_PORT": str(v) for k, v in ports.items()},
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp_path / 'offload.db'}",
        "OFFLOAD_LOG_DIR": str(tmp_path / "log"),
        "OFFLOAD_EMULATOR_DATA_FILE": str(tmp_path / "emulator.json"),
        "OFFLOAD_WEB_PROCESSES": "1",
        "OFFLOAD_WORKER_PROCESSES": "1",
    }
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "offload.cli", "run"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    web = f"http://127.0.0.1:{ports['WEB']}"
    try:
        end = time.monotonic() + 30
        while True:
            try:
                if (
                    requests.get(f"{web}/healthz", timeout=1).ok
                    and requests.get(f"http://127.0.0.1:{ports['WORKER']}/healthz", timeout=1).ok
                ):
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < end, (tmp_path / "run.out").read_text()
            time.sleep(0.2)
        job = requests.post(
            f"{web}/jobs", json={"type": "demo.echo", "payload": {"hi": 1}}, timeout=10
        ).json()
        while job["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < end + 30, (tmp_path / "run.out").read_text()
            time.sleep(0.1)
            job = requests.get(f"{web}/jobs/{job['id']}", timeout=5).json()
        assert job["status"] == "succeeded" and job["result"] == {"hi": 1}
        # A path a client chose, with ESC and a newline: shown escaped, never obeyed.
        hostile = requests.get(f"{web}/jobs/%1b%5b31mX%0aFAKE%20LINE", timeout=5)
        assert hostile.status_code == 404
        rid = hostile.headers["X-Request-ID"]
        logs = subprocess.run(
            [sys.executable, "-m", "offload.cli", "logs", rid, "--log-dir", str(tmp_path / "log")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert logs.returncode == 0, logs.stderr
        assert "GET /jobs/\\x1b[31mX\n    FAKE LINE 404" in logs.stdout, logs.stdout
        while "FAKE LINE 404" not in (tmp_path / "run.out").read_text():
            assert time.monotonic() < end + 60, (tmp_path / "run.out").read_text()
            time.sleep(0.1)
        family = _descendants(proc.pid)
        assert len(family) >= 5  # emulator, two gunicorn arbiters and their workers
    finally:
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
        code = proc.wait(30)
        out.close()
    output = (tmp_path / "run.out").read_text()
    assert code == 0, output
    for name in ("emulator", "web", "worker", "reconciler"):
        assert f"{name.ljust(10)} | " in output
        assert f"{name.ljust(10)} | stopped" in output
    assert "job " in output and "accepted" in output
    for text in (output, logs.stdout):
        assert "\x1b" not in text
        assert not [line for line in text.splitlines() if line.startswith("FAKE")]
    assert "GET /jobs/\\x1b[31mX\\nFAKE LINE 404" in output
    assert not [pid for pid in family if _alive(pid)], output
