"""``offload logs REQUEST_ID``: one request's whole story, from the local log files."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from offload.config import load_config
from offload.logs import parse_line

__all__ = ["add_arguments", "local_entries", "main"]

LABELS = "logging.googleapis.com/labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``offload logs``."""
    parser.add_argument("request_id", help="the X-Request-ID of the client's request")
    parser.add_argument("--log-dir", help="folder of local log files (default: OFFLOAD_LOG_DIR)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON entries")


def local_entries(log_dir: str, request_id: str) -> Iterator[dict[str, Any]]:
    """Every entry in ``log_dir`` labelled with ``request_id`` (unordered)."""
    needle = json.dumps(request_id)
    for path in sorted(glob.glob(os.path.join(log_dir, "*.log*"))):
        if path.endswith(".lock"):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if needle not in line:
                    continue
                entry = parse_line(line)
                if entry and entry.get(LABELS, {}).get("request_id") == request_id:
                    yield entry


def format_entry(entry: dict[str, Any]) -> str:
    """One entry as a readable line: time, service, severity, labels, message."""
    labels = entry.get(LABELS, {})
    tags = " ".join(f"{k}={labels[k]}" for k in ("job_id", "task", "attempt") if labels.get(k))
    message = str(entry.get("message", "")).replace("\n", "\n    ")
    return (
        f"{entry.get('time', '?')} {labels.get('service', '?'):8} "
        f"{entry.get('severity', '?'):7} {tags} {message}"
    )


def main(args: argparse.Namespace) -> int:
    """Print the request's lines in time order; exit 1 when there are none."""
    log_dir = args.log_dir or str(load_config()["LOG_DIR"])
    entries = sorted(local_entries(log_dir, args.request_id), key=lambda e: e.get("time", ""))
    for entry in entries:
        print(json.dumps(entry) if args.json else format_entry(entry))
    if not entries:
        print(f"no log lines for request {args.request_id} in {log_dir}", file=sys.stderr)
        return 1
    return 0
