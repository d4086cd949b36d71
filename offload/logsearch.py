"""``offload logs ID``: one request's (or one job's) whole story, from files or Cloud Logging.

Locally it reads the JSON log files of web, worker and emulator (rotated copies too);
with ``--project`` it asks the Cloud Logging API for entries labelled with the request
id. Either way the lines come out in time order, readable or (``--json``) raw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from offload.errors import OffloadError
from offload.ids import is_job_id
from offload.logs import LABELS, TRACE, parse_line
from offload.requestctx import is_valid_request_id
from offload.settings import load_settings
from offload.termsafe import escape

__all__ = [
    "LocalTail",
    "LogSearchError",
    "add_arguments",
    "build_filter",
    "cloud_entries",
    "format_entry",
    "main",
    "parse_since",
    "request_entries",
]

CLOUD_DEFAULT_SINCE = "1d"
CLOUD_PAGE_SIZE = 1000
_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NO_CREDENTIALS = (
    "no Google Cloud credentials found: run `gcloud auth application-default login` "
    "or set GOOGLE_APPLICATION_CREDENTIALS, then try again"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``offload logs``."""
    parser.add_argument(
        "request_id",
        metavar="ID",
        help="the X-Request-ID of a client's request, or a job id (26 characters): then "
        "every request that touched the job (submit, deliveries, cancel, resubmit)",
    )
    parser.add_argument("--log-dir", help="folder of local log files (default: OFFLOAD_LOG_DIR)")
    parser.add_argument(
        "--project", help="search Cloud Logging of this Google Cloud project, not local files"
    )
    parser.add_argument(
        "--since",
        help="oldest line to show: a duration back from now (30m, 1h, 2d, 1w) or an RFC 3339 "
        f"time (default: everything locally, {CLOUD_DEFAULT_SINCE} with --project)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON entries")
    parser.add_argument(
        "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        help="with --follow: seconds between two looks (default: 0.5 locally, 5 with "
        "--project, as Cloud Logging allows 60 reads a minute)",
    )


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``1h``/``2d``-style durations before ``now``, or an RFC 3339 time, as a UTC datetime."""
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now - dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: use 30m, 1h, 2d, 1w or an RFC 3339 time") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def rfc3339(when: dt.datetime) -> str:
    """``when`` as Cloud Logging writes timestamps: UTC, ``Z``, microseconds."""
    text = when.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def build_filter(
    request_id: str | Sequence[str], since: dt.datetime, *, label: str = "request_id"
) -> str:
    """The Logging query for entries labelled with a value from ``since`` on (Logs Explorer)."""
    values = [request_id] if isinstance(request_id, str) else list(request_id)
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    # Parenthesised: in this language OR binds tighter than AND, so extending the query
    # with "OR ..." later cannot silently drop the time bound.
    bound = since.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    either = " OR ".join(f'labels.{label}="{v}"' for v in quoted)
    return f'({either}) AND (timestamp>="{bound}")'


class LocalTail:
    """Lines of one request in the local log files, each read once, across rotations.

    Files are remembered by inode and offset: a rotated file keeps its inode, so its
    lines are neither read twice nor missed when it is renamed ``*.log.1``.
    """

    def __init__(self, log_dir: str, request_id: str) -> None:
        self.log_dir = log_dir
        self.request_id = request_id
        self._needle = json.dumps(request_id)
        self._offsets: dict[tuple[int, int], int] = {}

    def poll(self) -> list[dict[str, Any]]:
        """The request's entries written since the last poll (all of them the first time)."""
        return list(self._matching(self.new_lines()))

    def new_lines(self) -> list[str]:
        """Every complete line written to the files since the last look."""
        found: list[str] = []
        for path in sorted(glob.glob(os.path.join(self.log_dir, "*.log*"))):
            if path.endswith(".lock"):
                continue
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    key = (st.st_dev, st.st_ino)
                    f.seek(self._offsets.get(key, 0))
                    data = f.read()
            except FileNotFoundError:
                continue  # rotated away between glob and open: seen under its new name
            complete = data.rfind(b"\n") + 1  # a line still being written waits
            self._offsets[key] = self._offsets.get(key, 0) + complete
            found.extend(data[:complete].decode("utf-8", "replace").splitlines())
        return found

    def _matching(self, lines: Iterable[str]) -> Iterable[dict[str, Any]]:
        for line in lines:
            if self._needle not in line:
                continue
            entry = parse_line(line)
            if entry and (entry.get(LABELS) or {}).get("request_id") == self.request_id:
                yield entry


def cloud_entries(client: Any, request_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    """Entries labelled ``request_id`` from ``since`` on, oldest first, every page read."""
    entries = client.list_entries(
        filter_=build_filter(request_id, since),
        order_by="timestamp asc",
        page_size=CLOUD_PAGE_SIZE,
    )
    return [entry.to_api_repr() for entry in entries]


def _from_cloud(raw: dict[str, Any]) -> dict[str, Any]:
    """A Cloud Logging entry in the shape of a local line, for :func:`format_entry`."""
    payload = raw.get("jsonPayload")
    if isinstance(payload, dict) and "message" in payload:
        message = payload["message"]
    elif "textPayload" in raw:
        message = raw["textPayload"]
    else:
        message = json.dumps(payload if payload is not None else raw.get("protoPayload"))
    labels = dict(raw.get("labels") or {})
    resource = (raw.get("resource") or {}).get("labels") or {}
    labels.setdefault("service", resource.get("module_id") or resource.get("service_name", "?"))
    return {
        "time": raw.get("timestamp", ""),
        "severity": raw.get("severity", "DEFAULT"),
        "message": message,
        LABELS: labels,
        TRACE: raw.get("trace", ""),
    }


def format_entry(entry: dict[str, Any]) -> str:
    """One entry as a readable line: time, service, severity, job labels, message."""
    labels = entry.get(LABELS) or {}
    if not isinstance(labels, dict):
        labels = {}
    tags = "".join(f"{k}={escape(str(labels[k]))} " for k in ("job_id", "attempt") if labels.get(k))
    # Control characters in any field are escaped: a client chose the request path.
    # Lines of a message stay lines, indented, so none can pass for an entry of its own.
    message = "\n    ".join(escape(line) for line in str(entry.get("message", "")).split("\n"))
    stamp, service = escape(str(entry.get("time", "?"))), escape(str(labels.get("service", "?")))
    return f"{stamp} {service:8} {escape(str(entry.get('severity', '?'))):7} {tags}{message}"


def _by_time(entries: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: str(e.get(key, "")))


class LogSearchError(OffloadError):
    """The logs could not be searched (no credentials, Cloud Logging refused the query)."""


def request_entries(
    request_id: str,
    *,
    log_dir: str = "",
    project: str = "",
    since: dt.datetime | None = None,
    client: Any = None,
) -> list[dict[str, Any]]:
    """One request's entries, oldest first, in the local shape (for :func:`format_entry`).

    Given a job id instead, the entries of every request that touched the job (its
    submission and deliveries, a cancel, a resubmit), as ``offload logs JOB_ID`` shows.
    From Cloud Logging of ``project`` when one is given (``since`` defaults to a day
    back), else from the local files in ``log_dir``. The console's search, and the same
    code as ``offload logs`` without ``--follow``.
    """
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

    from offload.joblogs import JobTail, cloud_job_entries

    of_job = is_job_id(request_id)
    if project:
        bound = since or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        fetch = cloud_job_entries if of_job else cloud_entries
        try:
            raw = fetch(client or _make_client(project), request_id, bound)
        except DefaultCredentialsError:
            raise LogSearchError(_NO_CREDENTIALS) from None
        except (GoogleAuthError, GoogleAPICallError) as e:
            raise LogSearchError(f"cannot read Cloud Logging of {project}: {e}") from e
        return [_from_cloud(r) for r in _by_time(raw, "timestamp")]
    floor = rfc3339(since) if since else ""
    entries = _by_time((JobTail if of_job else LocalTail)(log_dir, request_id).poll(), "time")
    return [e for e in entries if str(e.get("time", "")) >= floor]


def _make_client(project: str) -> Any:
    from google.cloud import logging as cloud_logging

    return cloud_logging.Client(project=project)  # type: ignore[no-untyped-call]


def _search_cloud(
    args: argparse.Namespace, since: dt.datetime, client: Any, emit: Callable[..., None]
) -> bool:
    """Print the request's Cloud Logging entries (and, following, new ones); any found?"""
    from offload.joblogs import cloud_job_entries

    fetch = cloud_job_entries if is_job_id(args.request_id) else cloud_entries
    seen: set[str] = set()
    while True:
        fresh = []
        for raw in fetch(client, args.request_id, since):
            key = str(raw.get("insertId") or json.dumps(raw, sort_keys=True))
            if key not in seen:
                seen.add(key)
                fresh.append(raw)
        for raw in _by_time(fresh, "timestamp"):
            emit(raw if args.json else _from_cloud(raw))
        stamps = [str(raw["timestamp"]) for raw in fresh if raw.get("timestamp")]
        if stamps:
            # Entries can arrive late: look again from a little before the newest one seen.
            newest = dt.datetime.fromisoformat(max(stamps))
            since = max(since, newest - dt.timedelta(minutes=1))
        if not args.follow:
            return bool(seen)
        time.sleep(args.poll_seconds or 5.0)


def _search_local(
    args: argparse.Namespace, since: dt.datetime | None, emit: Callable[..., None]
) -> bool:
    """Print the request's lines from the local files (and, following, new ones); any found?"""
    from offload.joblogs import JobTail

    log_dir = args.log_dir or load_settings().log_dir
    tail = (JobTail if is_job_id(args.request_id) else LocalTail)(log_dir, args.request_id)
    bound = rfc3339(since) if since else ""
    found = False
    while True:
        for entry in _by_time(tail.poll(), "time"):
            if str(entry.get("time", "")) >= bound:
                found = True
                emit(entry)
        if not args.follow:
            return found
        time.sleep(args.poll_seconds or 0.5)


def main(args: argparse.Namespace, *, logging_client: Any = None) -> int:
    """Print the request's lines in time order: 0 found, 1 none, 2 cannot search."""
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

    story = is_job_id(args.request_id) and not args.json
    shown = [""]  # the request of the last line printed

    def emit(entry: dict[str, Any]) -> None:
        if story:
            # A job's story: a heading whenever the next line belongs to another request.
            request_id = str((entry.get(LABELS) or {}).get("request_id") or "?")
            if request_id != shown[0]:
                shown[0] = request_id
                print(f"-- request {escape(str(request_id))}", flush=args.follow)
        # json.dumps escapes every control character (ensure_ascii); the rest is escaped.
        print(json.dumps(entry) if args.json else format_entry(entry), flush=args.follow)

    if not is_valid_request_id(args.request_id):
        print(escape(f"not a request id or job id: {args.request_id!r}"), file=sys.stderr)
        return 2
    now = dt.datetime.now(dt.UTC)
    try:
        since_text = args.since or (CLOUD_DEFAULT_SINCE if args.project else None)
        since = parse_since(since_text, now) if since_text else None
    except ValueError as e:
        print(escape(str(e)), file=sys.stderr)
        return 2
    where = f"Cloud Logging of {args.project}" if args.project else "the local log files"
    try:
        if args.project:
            client = logging_client or _make_client(args.project)
            found = _search_cloud(args, since or now, client, emit)
        else:
            found = _search_local(args, since, emit)
    except KeyboardInterrupt:
        return 0  # Ctrl-C ends --follow
    except DefaultCredentialsError:
        print(_NO_CREDENTIALS, file=sys.stderr)
        return 2
    except (GoogleAuthError, GoogleAPICallError) as e:
        print(escape(f"cannot read {where}: {e}"), file=sys.stderr)
        return 2
    if not found:
        what = "job" if is_job_id(args.request_id) else "request"
        print(escape(f"no log lines for {what} {args.request_id} in {where}"), file=sys.stderr)
        return 1
    return 0
