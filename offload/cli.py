"""The ``offload`` command: ``offload run`` starts the local system, ``offload logs`` searches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from offload.config import load_config
from offload.termsafe import escape

__all__ = ["main"]


def _run(args: argparse.Namespace) -> int:
    from offload.devrun import Supervisor, local_processes

    supervisor = Supervisor(local_processes(load_config()), raw=args.raw)
    supervisor.start()
    return supervisor.wait()


def _logs(args: argparse.Namespace) -> int:
    from offload.logsearch import main as logs_main

    return logs_main(args)


def _expire(args: argparse.Namespace) -> int:
    from worker import create_app
    from worker.cron import expire_jobs

    app = create_app()
    with app.app_context():
        retention = (
            args.older_than if args.older_than is not None else app.config["JOB_RETENTION_SECONDS"]
        )
        print(f"expired {expire_jobs(int(retention))} jobs")
    return 0


def _init_db(_args: argparse.Namespace) -> int:
    from offload.store import JobStore

    config = load_config()
    store = JobStore(config["DATABASE_URL"], pool_size=1)
    store.create_schema()
    store.dispose()
    print("schema ready")
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from web.auth import hash_key, new_key

    key = new_key()
    print(f"key (give it to the client, then forget it): {key}")
    print(escape(f"OFFLOAD_API_KEYS entry: {args.name}:{hash_key(key)}:{args.role}"))
    return 0


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
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("init", help="create the tables and indexes if missing").set_defaults(
        func=_init_db
    )
    jobs = sub.add_parser("jobs", help="job housekeeping").add_subparsers(
        dest="jobs", required=True
    )
    expire = jobs.add_parser("expire", help="delete finished jobs older than the retention")
    expire.add_argument(
        "--older-than", type=int, metavar="SECONDS", help="default: OFFLOAD_JOB_RETENTION_SECONDS"
    )
    expire.set_defaults(func=_expire)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    new = keys.add_parser("new", help="make an API key and its OFFLOAD_API_KEYS entry")
    new.add_argument("name", help="who the key is for (shown as key:NAME)")
    new.add_argument("--role", choices=("read", "submit", "admin"), default="submit")
    new.set_defaults(func=_new_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``offload`` command."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
