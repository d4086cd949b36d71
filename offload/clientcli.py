"""The client commands of ``offload``: submit, and jobs list, show, cancel, resubmit, watch.

They talk to a running service over HTTP through offload.client, never importing web or
worker. The service is OFFLOAD_URL (default: where make run serves web) with the key in
OFFLOAD_API_KEY, or --url and --api-key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from offload.client import (
    DEFAULT_URL,
    Client,
    ClientError,
    Job,
    OffloadAPIError,
    ServiceUnreachableError,
    WaitTimeoutError,
)
from offload.clientout import describe, dump, err, out, when
from offload.termsafe import escape

__all__ = ["EXIT_CODES", "add_commands"]

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4
EXIT_UNREACHABLE = 5
EXIT_API_ERROR = 6
EXIT_INTERRUPTED = 130

EXIT_CODES = """\
exit status:
    0  succeeded (the job, or the command)
    1  the job failed
    2  bad usage (arguments, payload JSON)
    3  the job was cancelled
    4  timed out waiting (the job keeps running)
    5  the service is unreachable
    6  the service answered an error (printed with its request id)
  130  interrupted (Ctrl-C; the job keeps running)"""

_BY_STATUS = {"succeeded": EXIT_SUCCEEDED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class UsageError(Exception):
    """A bad argument found after parsing (a payload that is not a JSON object, say)."""


def _client_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # Client-side variables (where to reach a service), not settings of the services.
    common.add_argument(
        "--url",
        default=os.environ.get("OFFLOAD_URL") or DEFAULT_URL,
        help=f"the web service (default: OFFLOAD_URL, else {DEFAULT_URL})",
    )
    common.add_argument(
        "--api-key",
        default=os.environ.get("OFFLOAD_API_KEY") or None,
        help="API key (default: OFFLOAD_API_KEY)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    return common


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="with waiting: give up after S seconds"
    )


def add_commands(sub: Any, jobs: Any) -> None:
    """Add ``submit`` to the top-level subcommands and the client commands under ``jobs``."""
    common = _client_options()
    fmt = argparse.RawDescriptionHelpFormatter

    def command(parent: Any, name: str, help: str, func: Callable[..., int]) -> Any:
        parser = parent.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            parents=[common],
            epilog=EXIT_CODES,
            formatter_class=fmt,
        )
        parser.set_defaults(func=lambda args: _run(func, args))
        return parser

    submit = command(sub, "submit", "submit a job (and, with --wait, wait for it)", _submit)
    submit.add_argument("type", help="the job type, e.g. demo.sleep")
    submit.add_argument(
        "--payload",
        default="{}",
        metavar="JSON",
        help="the payload: a JSON object, or @FILE to read it from a file (@- reads stdin)",
    )
    submit.add_argument("--delay", type=float, metavar="S", help="run no earlier than S seconds")
    submit.add_argument(
        "--deadline", type=float, metavar="S", help="a tighter time budget than the type's"
    )
    submit.add_argument(
        "--idempotency-key", metavar="K", help="the same key again returns the same job"
    )
    submit.add_argument(
        "--notify", metavar="URL", help="a webhook: the service POSTs the finished job to URL"
    )
    submit.add_argument(
        "--wait", action="store_true", help="show progress until the job ends, then its result"
    )
    _wait_options(submit)

    batch = command(
        sub, "submit-batch", "submit many jobs at once (POST /jobs/batch)", _submit_batch
    )
    batch.add_argument(
        "file",
        metavar="FILE",
        help="submissions as JSON lines (one POST /jobs body per line, with an optional "
        'idempotency_key), a JSON array, or {"jobs": [...]}; - reads stdin',
    )

    listing = command(jobs, "list", "list jobs, newest first", _list)
    listing.add_argument("--status", help="only jobs with this status")
    listing.add_argument("--type", help="only jobs of this type")
    listing.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most N jobs (0: all; default 50)"
    )
    show = command(jobs, "show", "show one job", _show)
    show.add_argument("job_id", metavar="ID")
    cancel = command(jobs, "cancel", "cancel a job", _cancel)
    cancel.add_argument("job_id", metavar="ID")
    resubmit = command(jobs, "resubmit", "submit a failed or cancelled job again", _resubmit)
    resubmit.add_argument("job_id", metavar="ID")
    resubmit.add_argument("--wait", action="store_true", help="wait for the new job")
    _wait_options(resubmit)
    watch = command(jobs, "watch", "show a job's progress until it ends, then its result", _watch)
    watch.add_argument("job_id", metavar="ID")
    _wait_options(watch)


def _run(func: Callable[[Client, argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one client command, turning every error into its message and exit code."""
    try:
        with Client(args.url, api_key=args.api_key) as client:
            return func(client, args)
    except UsageError as e:
        err(f"offload: {e}")
        return EXIT_USAGE
    except ServiceUnreachableError as e:
        err(f"offload: {e}")
        return EXIT_UNREACHABLE
    except OffloadAPIError as e:
        err(f"offload: {e.status} {e.title}: {e.detail}")
        for item in e.errors:
            loc = ".".join(str(part) for part in item.get("loc") or [])
            err(f"  {loc}: {item.get('msg', '')}")
        if e.request_id:
            err(f"  (request id {e.request_id})")
        return EXIT_API_ERROR
    except ClientError as e:
        err(f"offload: {e}")
        return EXIT_API_ERROR


# -- commands ---------------------------------------------------------------------


def _payload(text: str) -> dict[str, Any]:
    try:
        if text.startswith("@"):
            name = text[1:]
            text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()
        value = json.loads(text)
    except OSError as e:
        raise UsageError(f"--payload: cannot read {text[1:]}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"--payload is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise UsageError("--payload must be a JSON object")
    return value


def _submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(
        args.type,
        _payload(args.payload),
        delay_seconds=args.delay,
        deadline_seconds=args.deadline,
        idempotency_key=args.idempotency_key,
        notify=args.notify,
    )
    return _follow_or_print(client, job, args, "submitted")


def _submissions(path: str) -> list[dict[str, Any]]:
    """The submissions of FILE: JSON lines, a JSON array, or {"jobs": [...]}."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    try:
        data: Any = json.loads(text)
    except ValueError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise UsageError(f"{path} is neither JSON nor JSON lines: {e}") from None
    if isinstance(data, dict):
        data = data.get("jobs")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise UsageError(f"{path} holds no list of submissions (JSON objects)")
    if not data:
        raise UsageError(f"{path} holds no submission")
    return data


def _submit_batch(client: Client, args: argparse.Namespace) -> int:
    entries = client.submit_batch(_submissions(args.file))
    refused = 0
    for index, entry in enumerate(entries):
        if isinstance(entry, Job):
            out(dump(entry.raw) if args.json else entry.id)
            continue
        refused += 1
        if args.json:
            out(dump({"index": index, "status": entry.status, "detail": entry.detail}))
        else:
            out("-")  # keeps one line per submission on stdout
            err(escape(f"submission {index}: {entry.status} {entry.title}: {entry.detail}"))
    if not args.json:
        err(f"{len(entries) - refused} of {len(entries)} jobs submitted")
    return EXIT_API_ERROR if refused else EXIT_SUCCEEDED


def _follow_or_print(client: Client, job: Job, args: argparse.Namespace, verb: str) -> int:
    if args.wait:
        return _wait(client, job, args)
    if args.json:
        out(dump(job.raw))
    else:
        err(f"{verb} {job.type} as job {job.id} ({job.status})")
        out(job.id)  # alone on stdout, for ID=$(offload submit ...)
    return EXIT_SUCCEEDED


def _list(client: Client, args: argparse.Namespace) -> int:
    count = 0
    for job in client.list(status=args.status, type=args.type):
        if args.limit and count >= args.limit:
            break
        count += 1
        if args.json:
            out(dump(job.raw))  # one JSON object per line
        else:
            progress = f"{job.progress.fraction * 100:.0f}%" if job.progress else "-"
            out(
                f"{job.id}  {job.status:9}  {progress:>4}  {when(job, 'created_at'):24}  {job.type}"
            )
    if not count and not args.json:
        err("no jobs")
    return EXIT_SUCCEEDED


def _show(client: Client, args: argparse.Namespace) -> int:
    job = client.get(args.job_id)
    out(dump(job.raw) if args.json else "\n".join(escape(line) for line in describe(job)))
    return EXIT_SUCCEEDED


def _cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel(args.job_id)
    if args.json:
        out(dump(job.raw))
    elif job.status == "cancelled":
        err(f"job {job.id} cancelled")
    else:
        err(f"job {job.id} is {job.status}: asked to stop, it ends at its next check")
    return EXIT_SUCCEEDED


def _resubmit(client: Client, args: argparse.Namespace) -> int:
    return _follow_or_print(client, client.resubmit(args.job_id), args, "resubmitted")


def _watch(client: Client, args: argparse.Namespace) -> int:
    return _wait(client, client.get(args.job_id), args)


def _wait(client: Client, job: Job, args: argparse.Namespace) -> int:
    from offload.progressview import ProgressView

    view = ProgressView(sys.stderr, job)
    try:
        final = client.wait(job.id, timeout=args.timeout, on_progress=view.update)
    except WaitTimeoutError as e:
        view.close()
        err(f"offload: {e}; it keeps running (offload jobs watch {job.id})")
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        view.close()
        err(f"stopped watching; job {job.id} keeps running (offload jobs watch {job.id})")
        return EXIT_INTERRUPTED
    finally:
        view.close()
    if args.json:
        out(dump(final.raw))
    elif final.status == "succeeded":
        out(dump(final.result))
    else:
        error = final.error
        why = ""
        if error is not None:
            why = (
                f": {error.message}"
                if error.type == final.reason
                else f": {error.type}: {error.message}"
            )
        err(f"job {final.id} {final.status} ({final.reason or 'no reason given'}){why}")
    return _BY_STATUS.get(final.status, EXIT_API_ERROR)
