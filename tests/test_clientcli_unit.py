"""The offload command's help and output helpers, without a service."""

from __future__ import annotations

import argparse
import io

import pytest

from offload.cli import build_parser
from offload.client import Job, Progress
from offload.progressview import ProgressView
from offload.termsafe import escape


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_parsers(sub))
    return found


def test_every_help_text_reads_as_plain_text() -> None:
    helps = [p.format_help() for p in _parsers(build_parser())]
    assert len(helps) > 15
    for text in helps:
        assert "``" not in text and ":func:" not in text and ":class:" not in text, text
    top = build_parser().format_help()
    assert "exit status:" in top and "5  the service is unreachable" in top


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, ünïcode", "plain text, ünïcode"),
        ("\x1b[31mred\x07", "\\x1b[31mred\\x07"),
        ("a\nb\r", "a\\nb\\r"),
        ("\x9b2J and \u202eevil", "\\x9b2J and \\u202eevil"),
    ],
)
def test_control_characters_are_escaped(raw: str, shown: str) -> None:
    assert escape(raw) == shown
    assert escape("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"


def test_plain_progress_prints_a_line_per_visible_change_only() -> None:
    out = io.StringIO()
    job = Job(id="j1", type="t", status="queued")
    view = ProgressView(out, job, live=False)
    view.update(Job(id="j1", type="t", status="queued", attempts=1))  # nothing visible
    view.update(Job(id="j1", type="t", status="running", attempts=1))
    view.update(
        Job(id="j1", type="t", status="running", attempts=2, progress=Progress(0.5, "\x1bhalf"))
    )
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "queued" in lines[0] and "running" in lines[1]
    assert "running, attempt 2" in lines[2] and "50%" in lines[2] and "\\x1bhalf" in lines[2]
