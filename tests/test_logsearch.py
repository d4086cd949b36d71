"""``offload logs``: the query it sends to Cloud Logging, paging, ordering, local files, errors."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload import logsearch
from offload.logs import LABELS
from tests.cloud_logging_standin import LoggingStandIn, make_entry
from tests.conftest import ROOT

T0 = dt.datetime(2026, 11, 21, 10, 0, 0, tzinfo=dt.UTC)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    logsearch.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_since_takes_durations_and_rfc3339_times() -> None:
    assert logsearch.parse_since("90m", T0) == T0 - dt.timedelta(minutes=90)
    assert logsearch.parse_since("2d", T0) == T0 - dt.timedelta(days=2)
    assert logsearch.parse_since("1w", T0) == T0 - dt.timedelta(weeks=1)
    assert logsearch.parse_since("2026-11-20T08:00:00+01:00", T0) == dt.datetime(
        2026, 11, 20, 7, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError, match="--since"):
        logsearch.parse_since("yesterday", T0)


def test_the_filter_is_the_label_and_a_time_bound_each_in_parentheses() -> None:
    since = dt.datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=dt.UTC)
    assert logsearch.build_filter("rid-1", since) == (
        '(labels.request_id="rid-1") AND (timestamp>="2026-11-20T09:30:15Z")'
    )


# -- Cloud Logging through the real client library and the stand-in -----------------


@pytest.fixture
def standin() -> Iterator[LoggingStandIn]:
    entries = [
        make_entry(
            when=T0 + dt.timedelta(seconds=i),
            message=f"line {i}",
            labels={"request_id": "rid-1" if i % 3 else "other", "service": "web", "job_id": "j"},
            severity="WARNING" if i == 4 else "INFO",
            insert_id=f"id{i}",
        )
        for i in range(10)
    ]
    entries.append(  # older than the bound: never returned
        make_entry(
            when=T0 - dt.timedelta(days=3), message="ancient", labels={"request_id": "rid-1"}
        )
    )
    server = LoggingStandIn(entries[::-1], page_size=2).start()
    yield server
    server.stop()


def test_project_search_sends_the_exact_filter_and_reads_every_page_in_order(
    standin: LoggingStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("rid-1", "--project", "proj-1", "--since", "2026-11-21T09:00:00Z")
    assert logsearch.main(args, logging_client=standin.client("proj-1")) == 0

    first, *rest = standin.requests
    assert first.filter == '(labels.request_id="rid-1") AND (timestamp>="2026-11-21T09:00:00Z")'
    assert list(first.resource_names) == ["projects/proj-1"]
    assert first.order_by == "timestamp asc" and first.page_token == ""
    assert [r.page_token for r in rest] == ["2", "4"]  # 6 matching entries, pages of 2
    assert all(r.filter == first.filter for r in rest)

    out = capsys.readouterr().out.splitlines()
    assert [line.rsplit(" ", 2)[-2:] for line in out] == [
        ["line", str(i)] for i in (1, 2, 4, 5, 7, 8)
    ]
    assert out[0].startswith("2026-11-21T10:00:01.000000Z web ")
    assert "WARNING" in out[2] and "job_id=j" in out[0]


def test_project_search_json_prints_the_raw_entries(
    standin: LoggingStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("rid-1", "--project", "proj-1", "--since", "2026-11-21T00:00:00Z", "--json")
    assert logsearch.main(args, logging_client=standin.client("proj-1")) == 0
    raw = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["insertId"] for e in raw] == ["id1", "id2", "id4", "id5", "id7", "id8"]
    assert raw[0]["labels"]["request_id"] == "rid-1"
    assert raw[0]["jsonPayload"] == {"message": "line 1"}


def test_project_search_defaults_to_the_last_day(standin: LoggingStandIn) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    logsearch.main(parse("rid-1", "--project", "p"), logging_client=standin.client("p"))
    after = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    bound = standin.requests[0].filter.split('timestamp>="')[1].split('"')[0]
    assert before <= dt.datetime.fromisoformat(bound) <= after


def test_nothing_found_in_the_project_exits_1(
    standin: LoggingStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("nobody", "--project", "p", "--since", "1h")
    assert logsearch.main(args, logging_client=standin.client("p")) == 1
    assert "no log lines for request nobody in Cloud Logging of p" in capsys.readouterr().err


def _run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload.cli", "logs", *argv],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_credentials_give_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_"))}
    env |= {"CLOUDSDK_CONFIG": str(tmp_path), "NO_GCE_CHECK": "True", "HOME": str(tmp_path)}
    result = _run_cli("rid-1", "--project", "some-project", env=env)
    assert result.returncode == 2
    assert "no Google Cloud credentials found" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("argv", [["bad\nid"], ['x"y'], ["rid", "--since", "soon"]])
def test_bad_arguments_exit_2_without_a_traceback(argv: list[str]) -> None:
    result = _run_cli(*argv, "--log-dir", "/nonexistent")
    assert result.returncode == 2 and "Traceback" not in result.stderr


# -- local files -------------------------------------------------------------------


def _line(when: str, service: str, rid: str, message: str) -> str:
    return json.dumps(
        {
            "time": when,
            "message": message,
            "severity": "INFO",
            LABELS: {"service": service, "request_id": rid},
        }
    )


def test_local_search_merges_services_and_rotated_files_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "web.log.1").write_text(
        _line("2026-11-21T10:00:01.000000Z", "web", "r", "a") + "\n"
    )
    (tmp_path / "web.log").write_text(
        _line("2026-11-21T10:00:04.000000Z", "web", "r", "d")
        + "\nnot json\n"
        + _line("2026-11-21T10:00:02.000000Z", "web", "other", "x")
        + "\n"
    )
    (tmp_path / "worker.log").write_text(
        _line("2026-11-21T10:00:03.000000Z", "worker", "r", "c")
        + "\n"
        + _line("2026-11-21T10:00:02.000000Z", "worker", "r", "b")
        + "\n"
        + _line("2026-11-21T10:00:05.000000Z", "worker", "r", "partial")  # no newline yet
    )
    assert logsearch.main(parse("r", "--log-dir", str(tmp_path))) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in out] == ["a", "b", "c", "d"]
    assert out[1].split()[1] == "worker"
    assert (
        logsearch.main(parse("r", "--log-dir", str(tmp_path), "--since", "2026-11-21T10:00:03Z"))
        == 0
    )
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == ["c", "d"]


def test_local_tail_reads_each_line_once_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    log.write_text(_line("2026-11-21T10:00:01Z", "web", "r", "one") + "\n")
    tail = logsearch.LocalTail(str(tmp_path), "r")
    assert [e["message"] for e in tail.poll()] == ["one"]
    with log.open("a") as f:
        f.write(_line("2026-11-21T10:00:02Z", "web", "r", "two") + "\n")
    log.rename(tmp_path / "web.log.1")
    log.write_text(_line("2026-11-21T10:00:03Z", "web", "r", "three") + "\n")
    assert sorted(e["message"] for e in tail.poll()) == ["three", "two"]
    assert tail.poll() == []


def test_follow_prints_lines_as_they_are_written_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(_line("2026-11-21T10:00:01.000000Z", "worker", "r", "first") + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "offload.cli", "logs", "r", "--log-dir", str(tmp_path),
         "--follow", "--poll-seconds", "0.05"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[-1] == "first"
        with log.open("a") as f:
            f.write(_line("2026-11-21T10:00:02.000000Z", "worker", "r", "second") + "\n")
        assert proc.stdout.readline().split()[-1] == "second"
        time.sleep(0.2)  # let it reach its next sleep, as a person pressing Ctrl-C would
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_project_follow_prints_only_new_entries_and_moves_its_bound(
    standin: LoggingStandIn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    looks: list[float] = []

    def fake_sleep(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 1:  # a line arrives while we wait
            standin.entries.append(
                make_entry(
                    when=T0 + dt.timedelta(minutes=5),
                    message="late line",
                    labels={"request_id": "rid-1", "service": "worker"},
                    insert_id="late",
                )
            )
        else:
            raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(logsearch.time, "sleep", fake_sleep)
    args = parse("rid-1", "--project", "p", "--since", "2026-11-21T09:00:00Z", "--follow")
    assert logsearch.main(args, logging_client=standin.client("p")) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in out] == ["1", "2", "4", "5", "7", "8", "line"]
    assert looks == [5.0, 5.0]  # Cloud Logging allows 60 reads a minute
    filters = [r.filter for r in standin.requests if not r.page_token]
    assert filters == [
        '(labels.request_id="rid-1") AND (timestamp>="2026-11-21T09:00:00Z")',
        '(labels.request_id="rid-1") AND (timestamp>="2026-11-21T09:59:08Z")',  # newest - 1 min
    ]
