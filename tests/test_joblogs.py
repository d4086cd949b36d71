"""``offload logs JOB_ID``: every request that touched a job, locally and in Cloud Logging."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload import logsearch
from offload.logs import LABELS
from tests.cloud_logging_standin import LoggingStandIn, make_entry

T0 = dt.datetime(2026, 11, 21, 10, 0, 0, tzinfo=dt.UTC)
JOB = "01m8stwwj6vpky1w1g6ery14n3"
OTHER = "01m8stwwj6vpky1w1g6ery14zz"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    logsearch.add_arguments(parser)
    return parser.parse_args(list(argv))


def _line(second: int, service: str, rid: str, message: str, job: str | None = None) -> str:
    labels = {"service": service, "request_id": rid} | ({"job_id": job} if job else {})
    when = (T0 + dt.timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
    return json.dumps({"time": when, "message": message, "severity": "INFO", LABELS: labels})


STORY = [
    # the submission, and the deliveries that carry its request id
    ("web", 1, "submit", "job accepted", JOB),
    ("web", 2, "submit", "POST /jobs 202", JOB),
    ("emulator", 3, "submit", "dispatch attempt 1 -> 500", None),
    ("worker", 3, "submit", "attempt 1 failed", JOB),
    # someone else's request in between: never shown
    ("web", 4, "elsewhere", "POST /jobs 202", OTHER),
    # the cancel, its own request
    ("web", 5, "cancel", "job cancelled", JOB),
    ("web", 6, "cancel", "DELETE /jobs/x 204", None),
    # a resubmission: its lines about the new job belong to the story too
    ("web", 7, "again", "resubmitting job", JOB),
    ("web", 8, "again", "job accepted", OTHER),
]


def test_local_job_search_prints_every_request_that_touched_the_job_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for service in ("web", "emulator", "worker"):
        lines = [_line(s, service, r, m, j) for svc, s, r, m, j in STORY if svc == service]
        (tmp_path / f"{service}.log").write_text("\n".join(lines) + "\n")
    assert logsearch.main(parse(JOB, "--log-dir", str(tmp_path))) == 0
    out = capsys.readouterr().out.splitlines()
    headings = [line for line in out if line.startswith("-- request ")]
    assert headings == ["-- request submit", "-- request cancel", "-- request again"]
    messages = [line.split("INFO", 1)[1].strip() for line in out if "INFO" in line]
    messages = [m.removeprefix(f"job_id={JOB} ").removeprefix(f"job_id={OTHER} ") for m in messages]
    assert messages == [
        "job accepted",
        "POST /jobs 202",
        "dispatch attempt 1 -> 500",
        "attempt 1 failed",
        "job cancelled",
        "DELETE /jobs/x 204",
        "resubmitting job",
        "job accepted",
    ]


def test_a_job_without_lines_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web.log").write_text(_line(1, "web", "r", "x", OTHER) + "\n")
    assert logsearch.main(parse(JOB, "--log-dir", str(tmp_path))) == 1
    assert f"no log lines for job {JOB}" in capsys.readouterr().err


@pytest.fixture
def standin() -> Iterator[LoggingStandIn]:
    entries = [
        make_entry(
            when=T0 + dt.timedelta(seconds=s),
            message=m,
            labels={"service": svc, "request_id": r} | ({"job_id": j} if j else {}),
            insert_id=f"{r}-{s}-{svc}",
        )
        for svc, s, r, m, j in STORY
    ]
    server = LoggingStandIn(entries, page_size=3).start()
    yield server
    server.stop()


def test_cloud_job_search_asks_for_the_job_label_then_for_its_requests(
    standin: LoggingStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(JOB, "--project", "p", "--since", "2026-11-21T09:00:00Z")
    assert logsearch.main(args, logging_client=standin.client("p")) == 0
    filters = [r.filter for r in standin.requests if not r.page_token]
    assert filters == [
        f'(labels.job_id="{JOB}") AND (timestamp>="2026-11-21T09:00:00Z")',
        '(labels.request_id="again" OR labels.request_id="cancel" OR labels.request_id="submit")'
        ' AND (timestamp>="2026-11-21T09:00:00Z")',
    ]
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("--")] == [
        "-- request submit",
        "-- request cancel",
        "-- request again",
    ]
    assert len(out) == 3 + 8 and not any("elsewhere" in line for line in out)


def test_control_characters_in_log_messages_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "worker.log").write_text(
        _line(1, "worker", "r", "failed: \x1b[2J\x07 two\nlines", JOB) + "\n"
    )
    assert logsearch.main(parse(JOB, "--log-dir", str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert "failed: \\x1b[2J\\x07 two\n    lines" in out and "\x1b" not in out


def test_the_consoles_search_by_job_id_reads_the_same_story(tmp_path: Path) -> None:
    """request_entries (the console's log page) given a job id: every request of the job."""
    for service in ("web", "emulator", "worker"):
        lines = [_line(s, service, r, m, j) for svc, s, r, m, j in STORY if svc == service]
        (tmp_path / f"{service}.log").write_text("\n".join(lines) + "\n")
    entries = logsearch.request_entries(JOB, log_dir=str(tmp_path))
    assert [e["message"] for e in entries] == [m for _, _, r, m, _ in STORY if r != "elsewhere"]
    # A request id still reads that one request only.
    cancel = logsearch.request_entries("cancel", log_dir=str(tmp_path))
    assert [e["message"] for e in cancel] == ["job cancelled", "DELETE /jobs/x 204"]
