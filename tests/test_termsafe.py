"""Control characters reach no terminal: make run's lines, offload logs, the CLI."""

from __future__ import annotations

import io
import json
import re

import pytest

from offload import cli
from offload.devrun import ProcessSpec, Supervisor, render_line
from offload.logs import LABELS
from offload.logsearch import format_entry
from offload.termsafe import escape, escape_message

HOSTILE_PATH = "/jobs/\x1b[31mX\nFAKE LINE"  # GET /jobs/%1b%5b31mX%0aFAKE%20LINE, decoded
# Anything a terminal obeys: C0, DEL, C1 (0x9b is CSI), line separators, bidi overrides.
OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def access_line(path: str = HOSTILE_PATH, **labels: str) -> str:
    return json.dumps(
        {
            "time": "2026-12-01T22:00:00.123456Z",
            "severity": "INFO",
            "message": f"GET {path} 404",
            LABELS: {"request_id": "r1", "service": "web", **labels},
        },
        ensure_ascii=False,  # as the services write their files
    )


def assert_safe(text: str) -> None:
    assert not OBEYED.search(text), repr(text)
    for line in text.splitlines()[1:]:
        assert not line.startswith("FAKE"), repr(text)


def test_make_runs_readable_line_shows_a_hostile_path_escaped() -> None:
    shown = render_line(access_line(job_id="\x1b]0;title\x07"))
    assert_safe(shown)
    assert "\n" not in shown
    assert "GET /jobs/\\x1b[31mX\\nFAKE LINE 404" in shown


@pytest.mark.parametrize("raw", [False, True])
def test_the_supervisor_escapes_what_its_processes_print(raw: bool) -> None:
    out = io.StringIO()
    specs = [
        ProcessSpec("web", ["sh", "-c", "printf '%s\\n' \"$L\"; printf 'x\\033[2Jy\\302\\233z\\n'"],
                    {"L": access_line("/x\u202eevil\x9b")}),
    ]  # fmt: skip
    supervisor = Supervisor(specs, out, raw=raw)
    supervisor.start()
    proc = supervisor.procs["web"]
    proc.wait(30)
    supervisor.stop()
    text = out.getvalue()
    assert_safe(text)
    assert "x\\x1b[2Jy\\x9bz" in text
    assert all(line.startswith("web | ") for line in text.splitlines()), text


def test_offload_logs_readable_output_is_escaped() -> None:
    entry = json.loads(access_line(job_id="j\r\x1b[1A"))
    shown = format_entry(entry)
    assert_safe(shown)
    # offload logs keeps a message's lines, each indented: none passes for an entry.
    assert "GET /jobs/\\x1b[31mX\n    FAKE LINE 404" in shown


def test_a_traceback_keeps_its_lines_indented_and_escaped() -> None:
    message = "unexpected error handling GET /a\nFAKE\nTraceback (most recent call last):\n"
    message += '  File "x.py"\nValueError: \x1b[2J'
    shown = escape_message(message)
    assert_safe(shown)
    assert shown.splitlines()[0] == "unexpected error handling GET /a\\nFAKE"
    assert all(line.startswith("    ") for line in shown.splitlines()[1:])


def test_escape_names_what_it_replaced() -> None:
    assert escape("a\x1b[0m\tb\x00\x7f\u2028") == "a\\x1b[0m\\tb\\x00\\x7f\\u2028"
    assert escape("plain text, é ☃") == "plain text, é ☃"


def test_the_cli_escapes_names_it_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "new", "evil\x1b[31m\nFAKE"]) == 0
    assert_safe(capsys.readouterr().out.split("\n", 1)[1])
