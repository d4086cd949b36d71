"""``python -m emulator``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from emulator.app import Emulator, Settings
from emulator.db import DatabaseError
from emulator.persist import DataFileError
from emulator.queueyaml import QueueYamlError
from offload.errors import ConfigError
from offload.logs import configure_logging
from offload.settings import load_settings

logger = logging.getLogger("emulator")


def _urls(value: str, urls: str) -> list[str]:
    out = [u.strip() for u in urls.split(",") if u.strip()]
    if not out or not all(u.startswith(("http://", "https://")) for u in out):
        raise argparse.ArgumentTypeError(f"expected URLs http://HOST:PORT[,...], got {value!r}")
    return out


def _service(value: str) -> tuple[str, list[str]]:
    name, sep, urls = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=http://HOST:PORT[,...], got {value!r}")
    return name, _urls(value, urls)


def _alias(value: str) -> tuple[str, list[str]]:
    # The origin itself contains "://" but no "=", so the first "=" splits.
    origin, sep, urls = value.partition("=")
    if not sep or not origin.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"expected http://HOST:PORT=http://HOST:PORT[,...], got {value!r}"
        )
    return origin, _urls(value, urls)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every flag is documented in emulator/README.md)."""
    p = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local Cloud Tasks emulator: the google.cloud.tasks.v2.CloudTasks gRPC "
        "service with real dispatch semantics (retries, rate limits, deadlines, OIDC).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8123, help="gRPC port (default: 8123)")
    p.add_argument(
        "--http-port",
        type=int,
        default=8124,
        help="HTTP port for /oauth2/v1/certs, /healthz and /admin/* (default: 8124)",
    )
    p.add_argument("--project", default="offload-local", help="project id (default: offload-local)")
    p.add_argument("--location", default="us-central1", help="location id (default: us-central1)")
    p.add_argument(
        "--queue-yaml", metavar="PATH", help="create/update the queues of this queue.yaml"
    )
    p.add_argument(
        "--appengine-service",
        metavar="NAME=URL",
        action="append",
        type=_service,
        default=[],
        help="base URL standing in for App Engine service NAME (repeatable); several URLs, "
        "comma-separated, stand for several instances: pushes take them round-robin",
    )
    p.add_argument(
        "--http-target-alias",
        metavar="ORIGIN=URL[,URL...]",
        action="append",
        type=_alias,
        default=[],
        help="send HTTP-target pushes whose URL starts with ORIGIN (scheme://host:port) to "
        "these base URLs instead, round-robin (repeatable)",
    )
    p.add_argument(
        "--appengine-default-url",
        metavar="URL",
        help="base URL for App Engine services not mapped by --appengine-service "
        "(default: the URL of service 'default', if mapped)",
    )
    p.add_argument(
        "--data-file",
        metavar="PATH",
        help="SQLite database keeping queues, tasks and tombstones across restarts, written "
        "before each answer (a PATH ending in .json stands for the .sqlite3 beside it; an old "
        "JSON data file there is migrated once)",
    )
    p.add_argument(
        "--data-sync",
        choices=("normal", "full"),
        default="normal",
        help="normal: survives the death of the process (SIGKILL); full: also fsyncs every "
        "commit, for power loss, slower (default: normal)",
    )
    p.add_argument(
        "--tombstone-seconds",
        type=float,
        metavar="S",
        help="how long a finished or deleted task's name stays taken (default: 14400 = 4 h "
        "for queues made through the API, 777600 = 9 days for queue.yaml queues, as the "
        "Cloud Tasks reference says; 0 = not at all)",
    )
    p.add_argument(
        "--queue-tombstone-seconds",
        type=float,
        default=7 * 24 * 3600.0,
        metavar="S",
        help="how long a deleted queue's name stays taken (default: 604800 = 7 days)",
    )
    p.add_argument(
        "--min-dispatch-deadline-seconds",
        type=float,
        default=15.0,
        metavar="S",
        help="smallest dispatch_deadline accepted (default: 15, as Cloud Tasks; lower for tests)",
    )
    p.add_argument(
        "--max-task-bytes",
        type=int,
        default=100 * 1024,
        metavar="N",
        help="largest task accepted (default: 102400, the documented 100 KB)",
    )
    p.add_argument(
        "--shutdown-grace-seconds",
        type=float,
        default=2.0,
        metavar="S",
        help="on SIGINT/SIGTERM, wait this long for dispatches in flight (default: 2)",
    )
    p.add_argument("--log-dir", metavar="DIR", help="also write JSON log lines to DIR/emulator.log")
    p.add_argument(
        "--log-file-max-bytes",
        type=int,
        default=None,
        metavar="N",
        help="size at which DIR/emulator.log rotates (default: $OFFLOAD_LOG_FILE_MAX_BYTES, "
        "else 10 MiB)",
    )
    p.add_argument(
        "--log-file-backups",
        type=int,
        default=None,
        metavar="N",
        help="rotated log files kept (default: $OFFLOAD_LOG_FILE_BACKUPS, else 3)",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING ... (default: INFO)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGINT/SIGTERM; 0 on a clean stop."""
    args = build_parser().parse_args(argv)
    if args.log_file_max_bytes is None or args.log_file_backups is None:
        # The same variables as web and worker, read (and checked) by the same settings,
        # so one setting bounds every process's log file.
        try:
            offload_settings = load_settings()
        except ConfigError as e:
            print(f"emulator: {e}", file=sys.stderr)
            return 2
        if args.log_file_max_bytes is None:
            args.log_file_max_bytes = offload_settings.log_file_max_bytes
        if args.log_file_backups is None:
            args.log_file_backups = offload_settings.log_file_backups
    configure_logging(
        "emulator",
        level=args.log_level,
        project_id=args.project,
        log_dir=args.log_dir,
        max_file_bytes=args.log_file_max_bytes,
        backup_count=args.log_file_backups,
    )
    settings = Settings(
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        project=args.project,
        location=args.location,
        queue_yaml=args.queue_yaml,
        services=dict(args.appengine_service),
        http_aliases=dict(args.http_target_alias),
        default_service_url=args.appengine_default_url,
        data_file=args.data_file,
        data_sync=args.data_sync,
        tombstone_seconds=args.tombstone_seconds,
        queue_tombstone_seconds=args.queue_tombstone_seconds,
        min_dispatch_deadline=args.min_dispatch_deadline_seconds,
        max_task_bytes=args.max_task_bytes,
        shutdown_grace=args.shutdown_grace_seconds,
    )
    try:
        emulator = Emulator(settings)
        asyncio.run(emulator.run())
    except QueueYamlError as e:
        logger.error("bad queue.yaml: %s", e)
        return 2
    except (DataFileError, DatabaseError) as e:
        logger.error("bad data file (move it away to start afresh): %s", e)
        return 2
    except OSError as e:
        logger.error("cannot start: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
