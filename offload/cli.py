"""The ``offload`` command: ``offload run`` starts the local system, ``offload logs`` searches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from offload.config import load_config

__all__ = ["main"]


def _run(args: argparse.Namespace) -> int:
    from offload.devrun import Supervisor, local_processes

    supervisor = Supervisor(local_processes(load_config()), raw=args.raw)
    supervisor.start()
    return supervisor.wait()


def _logs(args: argparse.Namespace) -> int:
    from offload.logsearch import main as logs_main

    return logs_main(args)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``offload``."""
    parser = argparse.ArgumentParser(prog="offload", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="start the Cloud Tasks emulator, web and worker on loopback (Ctrl-C stops all)",
        description="Ports and paths come from OFFLOAD_* variables; see the README.",
    )
    run.add_argument(
        "--raw", action="store_true", help="print the JSON log lines as they are written"
    )
    run.set_defaults(func=_run)
    logs = sub.add_parser("logs", help="print every log line of one request, in time order")
    from offload.logsearch import add_arguments

    add_arguments(logs)
    logs.set_defaults(func=_logs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``offload`` command."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
