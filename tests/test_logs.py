"""Log lines: Cloud Logging's shape, labels from the context, one set-up, shared bounded files."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offload.logs import (
    LABELS,
    SPAN_ID,
    TRACE,
    configure_logging,
    current_context,
    log_context,
    parse_line,
    reset_logging_for_tests,
)
from tests.conftest import ROOT


class Captured:
    """The stdout lines of this process's logging, parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.stream.getvalue().splitlines():
            entry = json.loads(raw)  # every line is one JSON object
            assert isinstance(entry, dict)
            out.append(entry)
        return out


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[Captured]:
    """Logging configured for service ``web`` into a string buffer and ``tmp_path/log``."""
    reset_logging_for_tests()
    stream = io.StringIO()
    configure_logging("web", project_id="proj", log_dir=str(tmp_path / "log"), stream=stream)
    yield Captured(stream)
    reset_logging_for_tests()


def test_a_line_has_time_severity_message_and_the_service_label(captured: Captured) -> None:
    logging.getLogger("t").warning("hello %s", "there")
    (line,) = captured.lines()
    assert line["message"] == "hello there"
    assert line["severity"] == "WARNING"
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert line[LABELS]["service"] == "web"
    # Outside a request there is no trace and no httpRequest: the keys are left out.
    assert TRACE not in line and SPAN_ID not in line and "httpRequest" not in line


def test_context_labels_and_trace_reach_every_line_inside_the_block(captured: Captured) -> None:
    log = logging.getLogger("t")
    with log_context(request_id="r-1", trace="a" * 32, span_id="b" * 16, trace_sampled=True):
        log.info("outer")
        with log_context(job_id="j1", attempt=2, task=None):
            log.info("inner", extra={"labels": {"queue": "q"}})
        log.info("after")
    log.info("outside")
    outer, inner, after, outside = captured.lines()
    assert outer[LABELS]["request_id"] == "r-1" and "job_id" not in outer[LABELS]
    expected = {"request_id": "r-1", "job_id": "j1", "attempt": "2", "queue": "q"}
    assert inner[LABELS].items() >= expected.items()
    assert "task" not in inner[LABELS]  # None means unknown: no label
    assert "job_id" not in after[LABELS]
    for line in (outer, inner, after):
        assert line[TRACE] == "projects/proj/traces/" + "a" * 32
        assert line[SPAN_ID] == "b" * 16
        assert line["logging.googleapis.com/trace_sampled"] is True
    assert "request_id" not in outside[LABELS] and TRACE not in outside
    assert current_context() is None


def test_a_collecting_context_keeps_job_labels_set_by_nested_blocks(captured: Captured) -> None:
    with log_context(request_id="r", collect=True) as ctx:
        with log_context(job_id="j", job_type="demo.echo", queue="not-sticky"):
            pass
        assert ctx.collected == {"job_id": "j", "job_type": "demo.echo"}


def test_an_exception_is_logged_with_its_stack_trace_in_one_line(captured: Captured) -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("t").exception("failed")
    raw = captured.stream.getvalue()
    assert raw.count("\n") == 1  # one physical line
    (line,) = captured.lines()
    assert line["severity"] == "ERROR"
    assert line["message"].startswith("failed\nTraceback (most recent call last):")
    assert "RuntimeError: boom" in line["message"]


def test_configuring_twice_does_not_double_lines(captured: Captured, tmp_path: Path) -> None:
    other = io.StringIO()
    configure_logging("worker", stream=other, log_dir=str(tmp_path / "other"))
    logging.getLogger("t").info("once")
    assert [e["message"] for e in captured.lines()] == ["once"]
    assert other.getvalue() == ""
    assert not (tmp_path / "other").exists()
    file_lines = (tmp_path / "log" / "web.log").read_text().splitlines()
    assert [json.loads(x)["message"] for x in file_lines] == ["once"]


def test_the_file_line_is_the_same_json_as_the_stdout_line(
    captured: Captured, tmp_path: Path
) -> None:
    with log_context(request_id="r-2", trace="c" * 32, span_id="d" * 16):
        logging.getLogger("t").info("both", extra={"labels": {"k": "v"}})
    (stdout_line,) = captured.lines()
    (file_line,) = [parse_line(x) for x in (tmp_path / "log" / "web.log").read_text().splitlines()]
    assert file_line == stdout_line


def test_parse_line_accepts_only_json_objects() -> None:
    assert parse_line('{"a": 1}') == {"a": 1}
    assert parse_line("[1]") is None
    assert parse_line("Traceback ...") is None


_WRITER = textwrap.dedent(
    """
    import logging, os, sys
    from offload.logs import configure_logging, log_context
    name, log_dir, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
    configure_logging("svc", log_dir=log_dir, max_file_bytes=20_000, backup_count=int(sys.argv[4]),
                      stream=open(os.devnull, "w"))
    log = logging.getLogger("writer")
    with log_context(request_id="req-" + name):
        for i in range(lines):
            log.info("%s line %d %s", name, i, "x" * (i % 300))
    """
)


def _write_from_processes(log_dir: Path, processes: int, lines: int, backups: int) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, f"p{n}", str(log_dir), str(lines), str(backups)],
            cwd=ROOT,
        )
        for n in range(processes)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * processes


def test_processes_sharing_a_log_file_rotate_it_without_losing_or_mixing_lines(
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "log"
    _write_from_processes(log_dir, processes=4, lines=400, backups=500)
    files = sorted(p for p in log_dir.iterdir() if not p.name.endswith(".lock"))
    assert len(files) > 10  # it did rotate, many times
    seen: dict[str, set[int]] = {}
    for path in files:
        # Bounded: past the limit by at most one line from each writing process (a process
        # may write to a file another has just renamed, then reopens).
        assert path.stat().st_size < 20_000 + 4 * 1_000
        for raw in path.read_text().splitlines():
            entry = json.loads(raw)  # lines of several processes never interleave
            name, _, index, *_ = entry["message"].split(" ")
            assert entry[LABELS]["request_id"] == "req-" + name
            seen.setdefault(name, set()).add(int(index))
    assert seen == {f"p{n}": set(range(400)) for n in range(4)}  # none lost, none doubled


def test_rotation_keeps_only_the_configured_number_of_backups(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    _write_from_processes(log_dir, processes=3, lines=300, backups=2)
    names = sorted(p.name for p in log_dir.iterdir())
    assert names == ["svc.log", "svc.log.1", "svc.log.2", "svc.log.lock"]
    total = sum(p.stat().st_size for p in log_dir.iterdir())
    assert total < 3 * (20_000 + 2_000)


def test_a_log_file_removed_under_a_running_process_is_recreated(
    captured: Captured, tmp_path: Path
) -> None:
    path = tmp_path / "log" / "web.log"
    logging.getLogger("t").info("first")
    os.remove(path)
    logging.getLogger("t").info("second")
    assert [json.loads(x)["message"] for x in path.read_text().splitlines()] == ["second"]
