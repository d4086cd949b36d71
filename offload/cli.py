"""The offload command: run starts the local system, logs searches, the rest talk to web."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from offload.errors import OffloadError
from offload.settings import Settings, load_settings
from offload.termsafe import escape

if TYPE_CHECKING:
    from offload.store import JobStore

__all__ = ["main"]


def _run(args: argparse.Namespace) -> int:
    from offload.devrun import Supervisor, local_processes
    from offload.store import migrate

    settings = load_settings()
    # Locally the schema follows the code: what a deploy step does in production.
    migrate.upgrade(settings.database_url.get_secret_value())
    supervisor = Supervisor(local_processes(settings), raw=args.raw)
    supervisor.start()
    return supervisor.wait()


def _logs(args: argparse.Namespace) -> int:
    from offload.logsearch import main as logs_main

    return logs_main(args)


def _reconcile(args: argparse.Namespace) -> int:
    import json
    import signal
    import threading

    from offload.enqueue import TaskQueue
    from offload.logs import configure_logging_from
    from offload.outbox import Reconciler
    from offload.store import JobStore

    settings = load_settings()
    configure_logging_from("reconciler", settings)
    store = JobStore(
        settings.database_url.get_secret_value(),
        pool_size=1,
        retry_seconds=settings.store_retry_seconds,
        application_name="offload-reconciler",
    )
    store.check_schema()
    tasks = TaskQueue(settings)
    reconciler = Reconciler(store, tasks, settings)
    try:
        if args.every is None:
            print(json.dumps(reconciler.run_once().as_dict()))
            return 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda _n, _f: stop.set())
        reconciler.run_forever(args.every, stop)
        return 0
    finally:
        tasks.close()
        store.dispose()


def _database_url() -> str:
    return load_settings().database_url.get_secret_value()


def _store(settings: Settings) -> JobStore:
    from offload.store import JobStore

    return JobStore(settings.database_url.get_secret_value(), pool_size=1)


def _expire(args: argparse.Namespace) -> int:
    from offload.housekeeping import expire_finished

    settings = load_settings()
    retention = args.older_than if args.older_than is not None else settings.job_retention_seconds
    store = _store(settings)
    try:
        store.check_schema()
        print(f"expired {expire_finished(store, int(retention))} jobs")
    finally:
        store.dispose()
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from offload.store import migrate

    url = _database_url()
    migrate.upgrade(url, args.revision, sql=args.sql)
    if not args.sql:
        print(f"schema at revision {migrate.current_revision(url)}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from offload.store import migrate

    url = _database_url()
    migrate.downgrade(url, args.revision)
    print(f"schema at revision {migrate.current_revision(url) or 'none'}")
    return 0


def _db_current(_args: argparse.Namespace) -> int:
    from offload.store import migrate

    url = _database_url()
    current, head = migrate.current_revision(url), migrate.head_revision()
    state = "up to date" if current == head else f"behind: run offload db upgrade to reach {head}"
    print(f"{current or 'none'} ({state})")
    return 0 if current == head else 1


def _db_history(_args: argparse.Namespace) -> int:
    from offload.store import migrate

    for revision, parent, message in migrate.history():
        print(f"{parent or 'base'} -> {revision}  {message.splitlines()[0] if message else ''}")
    return 0


def _db_revision(args: argparse.Namespace) -> int:
    from offload.store import migrate

    url = _database_url()
    print(migrate.new_revision(url, args.message, autogenerate=not args.empty))
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from offload.keys import hash_key, new_key

    key = new_key()
    print(f"key (give it to the client, then forget it): {key}")
    print(escape(f"OFFLOAD_API_KEYS entry: {args.name}:{hash_key(key)}:{args.role}"))
    return 0


def _add_db_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser(
        "db",
        help="the job store's schema migrations",
        description="Migrations of the database OFFLOAD_DATABASE_URL names. Run upgrade as a "
        "deploy step, before the new code serves (docs/DEPLOY.md).",
    ).add_subparsers(dest="db", required=True)
    upgrade = db.add_parser("upgrade", help="apply the migrations up to the newest one")
    upgrade.add_argument("revision", nargs="?", default="head", help="default: head")
    upgrade.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    upgrade.set_defaults(func=_db_upgrade)
    down = db.add_parser("downgrade", help="undo migrations down to REVISION (loses data)")
    down.add_argument("revision", help="a revision number, or base")
    down.set_defaults(func=_db_downgrade)
    db.add_parser("current", help="the database's revision (exit 1 when behind)").set_defaults(
        func=_db_current
    )
    db.add_parser("history", help="every migration, oldest first").set_defaults(func=_db_history)
    rev = db.add_parser(
        "revision", help="developers: write the next migration, autogenerated from schema.py"
    )
    rev.add_argument("-m", "--message", required=True, help="what the migration changes")
    rev.add_argument("--empty", action="store_true", help="an empty revision to fill by hand")
    rev.set_defaults(func=_db_revision)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``offload``."""
    from offload.clientcli import EXIT_CODES, add_commands

    parser = argparse.ArgumentParser(
        prog="offload",
        description="Offload: run the local system, submit and watch jobs, search logs.",
        epilog="The client commands (submit, jobs list/show/cancel/resubmit/watch) reach\n"
        "the service at OFFLOAD_URL (default http://127.0.0.1:8080) with OFFLOAD_API_KEY.\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    logs = sub.add_parser(
        "logs", help="print every log line of one request, or of every request of a job"
    )
    from offload.logsearch import add_arguments

    add_arguments(logs)
    logs.set_defaults(func=_logs)
    _add_db_commands(sub)
    jobs = sub.add_parser("jobs", help="list, show, cancel, resubmit, watch, expire jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs", required=True)
    add_commands(sub, jobs_sub)
    expire = jobs_sub.add_parser("expire", help="delete finished jobs older than the retention")
    expire.add_argument(
        "--older-than", type=int, metavar="SECONDS", help="default: OFFLOAD_JOB_RETENTION_SECONDS"
    )
    expire.set_defaults(func=_expire)
    reconcile = jobs_sub.add_parser(
        "reconcile",
        help="enqueue again every unfinished job whose Cloud Task was never created or is gone",
    )
    reconcile.add_argument(
        "--every",
        type=float,
        metavar="SECONDS",
        help="keep running, one pass every SECONDS (make run does this); default: one pass",
    )
    reconcile.set_defaults(func=_reconcile)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    new = keys.add_parser("new", help="make an API key and its OFFLOAD_API_KEYS entry")
    new.add_argument("name", help="who the key is for (shown as key:NAME)")
    new.add_argument("--role", choices=("read", "submit", "admin"), default="submit")
    new.set_defaults(func=_new_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``offload`` command."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except OffloadError as e:
        print(f"offload: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
