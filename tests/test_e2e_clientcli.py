"""The offload client commands against the real stack: a real terminal (pty), exit codes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from offload.client import Client, Job
from tests.conftest import ROOT, Stack, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(dump_stack_on_failure: Stack) -> Iterator[Client]:
    with Client(dump_stack_on_failure.web_url) as c:
        yield c


def _env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "OFFLOAD_API_KEY")}
    return env | {"OFFLOAD_URL": stack.web_url, "TERM": "xterm-256color", "COLUMNS": "120"}


def offload(stack: Stack, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload.cli", *argv],
        cwd=ROOT,
        env=_env(stack),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def in_terminal(
    stack: Stack, *argv: str, timeout: float = 60, interrupt_on: str | None = None
) -> tuple[int, str]:
    """Run ``offload argv`` with a pty as its terminal; its exit code and all it wrote.

    With ``interrupt_on``, Ctrl-C (SIGINT) is sent once that text has been written.
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the pty
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "offload.cli", *argv], _env(stack))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    chunks: list[bytes] = []
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            if interrupt_on and interrupt_on in b"".join(chunks).decode("utf-8", "replace"):
                os.kill(pid, signal.SIGINT)
                interrupt_on = None
        else:
            os.kill(pid, 9)
            raise AssertionError("offload did not finish:\n" + b"".join(chunks).decode())
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def test_submit_wait_in_a_terminal_shows_a_live_progress_bar_and_the_result(stack: Stack) -> None:
    code, screen = in_terminal(
        stack, "submit", "demo.sleep", "--payload", '{"seconds": 2.5}', "--wait"
    )
    assert code == 0, screen
    assert "\x1b[?25l" in screen  # rich hid the cursor: a live display, redrawn in place
    assert "━" in screen and "demo.sleep" in screen  # the bar and the job
    assert "running" in screen and "100%" in screen
    assert "0:00:0" in screen  # elapsed time
    assert re.search(r"slept [0-9] of 2.5 seconds", screen)  # the job's progress message
    assert screen.rstrip().endswith('{"slept_seconds": 2.5}')


def test_without_a_terminal_progress_is_plain_lines_and_stdout_only_the_result(
    stack: Stack,
) -> None:
    result = offload(stack, "submit", "demo.sleep", "--payload", '{"seconds": 1.2}', "--wait")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"slept_seconds": 1.2}
    assert "\x1b" not in result.stderr and "━" not in result.stderr
    lines = result.stderr.splitlines()
    assert any(" running " in line for line in lines) and " succeeded " in lines[-1]


def test_a_failed_job_exits_1_with_its_error(stack: Stack) -> None:
    result = offload(stack, "submit", "demo.fail", "--payload", '{"message": "nope"}', "--wait")
    assert result.returncode == 1 and result.stdout == ""
    assert "failed (permanent_error)" in result.stderr and "nope" in result.stderr


def test_a_job_cancelled_while_watched_exits_3(stack: Stack, client: Client) -> None:
    job = client.submit("demo.sleep", {"seconds": 30})
    watcher = subprocess.Popen(
        [sys.executable, "-m", "offload.cli", "jobs", "watch", job.id, "--json"],
        cwd=ROOT,
        env=_env(stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while client.get(job.id).status != "running" and time.monotonic() < end:
            time.sleep(0.1)
        client.cancel(job.id)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
        watcher.wait()
    assert watcher.returncode == 3, err
    assert json.loads(out)["status"] == "cancelled"


def test_waiting_past_the_timeout_exits_4(stack: Stack, client: Client) -> None:
    job = client.submit("demo.echo", {}, delay_seconds=60)
    result = offload(stack, "jobs", "watch", job.id, "--timeout", "1")
    client.cancel(job.id)
    assert result.returncode == 4 and "still queued after 1s" in result.stderr


def test_usage_unreachable_and_api_errors_have_their_own_codes(stack: Stack) -> None:
    bad_json = offload(stack, "submit", "demo.echo", "--payload", "{nope")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    unreachable = offload(
        stack, "jobs", "show", "0" * 26, "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert unreachable.returncode == 5 and "no answer from" in unreachable.stderr
    unknown = offload(stack, "submit", "no.such", "--payload", "{}")
    assert unknown.returncode == 6 and "422" in unknown.stderr and "request id" in unknown.stderr
    for result in (bad_json, unreachable, unknown):
        assert "Traceback" not in result.stderr


def test_jobs_commands_show_list_cancel_resubmit(stack: Stack, client: Client) -> None:
    submitted = offload(stack, "submit", "demo.echo", "--payload", '{"k": 1}', "--delay", "60")
    assert submitted.returncode == 0
    job_id = submitted.stdout.strip()
    assert client.get(job_id).status == "queued"
    shown = offload(stack, "jobs", "show", job_id)
    assert f"job       {job_id}" in shown.stdout and "status    queued" in shown.stdout
    listed = offload(stack, "jobs", "list", "--status", "queued", "--json", "--limit", "0")
    assert job_id in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    cancelled = offload(stack, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0 and f"job {job_id} cancelled" in cancelled.stderr
    again = offload(stack, "jobs", "resubmit", job_id, "--wait", "--json")
    assert again.returncode == 0, again.stderr
    new = Job.from_dict(json.loads(again.stdout))
    assert new.status == "succeeded" and new.resubmit_of == job_id and new.result == {"k": 1}

    story = offload(stack, "logs", job_id, "--log-dir", str(stack.log_dir))
    assert story.returncode == 0, story.stderr
    headings = [line for line in story.stdout.splitlines() if line.startswith("-- request ")]
    assert len(headings) == 3, story.stdout  # submit, cancel, resubmit; never the GETs
    for line in ("POST /jobs 202", f"DELETE /jobs/{job_id} 204", f"/jobs/{job_id}/resubmit 202"):
        assert line in story.stdout
    assert f"job {new.id} succeeded" in story.stdout  # the resubmitted job's run, by request


def test_control_characters_from_the_server_are_escaped_on_the_terminal(
    stack: Stack, client: Client
) -> None:
    job = client.wait(client.submit("demo.fail", {"message": "red\x1b[31m\x07bell"}).id, 30)
    code, screen = in_terminal(stack, "jobs", "show", job.id)
    assert code == 0 and "red\\x1b[31m\\x07bell" in screen and "\x1b[31m" not in screen


def test_ctrl_c_stops_watching_with_130_and_the_job_keeps_running(
    stack: Stack, client: Client
) -> None:
    job = client.submit("demo.sleep", {"seconds": 30})
    code, screen = in_terminal(stack, "jobs", "watch", job.id, interrupt_on="slept 1 of 30")
    assert code == 130, screen
    assert "keeps running" in screen and "Traceback" not in screen
    assert client.get(job.id).status == "running"
    client.cancel(job.id)
