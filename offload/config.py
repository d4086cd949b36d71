"""The one place that reads the environment.

A setting's value comes from, last wins: the documented default (the embedded local
set-up: emulator, SQLite, log files under ``var/``), the environment variable
``OFFLOAD_<KEY>``, then the mapping a test or the app factory passes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from offload.errors import ConfigError

__all__ = ["SETTINGS", "Setting", "load_config"]

ENV_PREFIX = "OFFLOAD_"


@dataclass(frozen=True)
class Setting:
    """One documented configuration key."""

    key: str
    default: Any
    kind: type
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", "127.0.0.1", str, "`make run`: address every local process binds."),
    Setting("WEB_PORT", 8080, int, "`make run`: port of the web service."),
    Setting("WORKER_PORT", 8081, int, "`make run`: port of the worker service."),
    Setting("EMULATOR_PORT", 8123, int, "`make run`: gRPC port of the Cloud Tasks emulator."),
    Setting("EMULATOR_HTTP_PORT", 8124, int, "`make run`: the emulator's HTTP port (OIDC certs)."),
    Setting("WEB_PROCESSES", 4, int, "`make run`: gunicorn worker processes of web."),
    Setting("WORKER_PROCESSES", 2, int, "`make run`: gunicorn worker processes of worker."),
    Setting(
        "EMULATOR_DATA_FILE",
        "var/emulator-data.json",
        str,
        "`make run`: where the emulator keeps queues and tasks across restarts.",
    ),
    Setting("QUEUE_YAML", "queue.yaml", str, "`make run`: queue definitions the emulator loads."),
    Setting(
        "PROJECT_ID", "offload-local", str, "Google Cloud project id (trace names, queue path)."
    ),
    Setting("LOCATION", "us-central1", str, "Cloud Tasks location of the queue."),
    Setting("QUEUE", "offload-jobs", str, "Cloud Tasks queue id jobs are enqueued on."),
    Setting(
        "TASKS_EMULATOR_HOST",
        "127.0.0.1:8123",
        str,
        "host:port of the local Cloud Tasks emulator; empty = real Cloud Tasks.",
    ),
    Setting(
        "TASK_TARGET",
        "appengine",
        str,
        "`appengine` (App Engine target, service WORKER_SERVICE) or `http` (HTTP target "
        "WORKER_URL with an OIDC token).",
    ),
    Setting("WORKER_SERVICE", "worker", str, "App Engine service the tasks are routed to."),
    Setting("WORKER_URL", "", str, "Base URL of the worker for HTTP targets (Cloud Run)."),
    Setting("TASK_PATH", "/tasks/run", str, "Path of the worker's push handler."),
    Setting(
        "TASK_SERVICE_ACCOUNT",
        "",
        str,
        "Service account whose OIDC token Cloud Tasks attaches to HTTP-target pushes.",
    ),
    Setting(
        "ENQUEUE_TIMEOUT_SECONDS",
        5.0,
        float,
        "Total time budget of one CreateTask call, retries included.",
    ),
    Setting(
        "DISPATCH_MARGIN_SECONDS",
        15.0,
        float,
        "Added to a job's budget for the task's dispatch_deadline (grace to answer).",
    ),
    Setting(
        "DATABASE_URL",
        "sqlite:///var/offload.db",
        str,
        "SQLAlchemy URL of the job store (sqlite:///path or postgresql+psycopg://...).",
    ),
    Setting("DATABASE_POOL_SIZE", 5, int, "Connections per process for PostgreSQL."),
    Setting("MAX_BODY_BYTES", 256 * 1024, int, "Largest request body accepted (413 above)."),
    Setting("PAGE_SIZE_MAX", 100, int, "Largest page `GET /jobs?limit=` returns."),
    Setting("POLL_AFTER_SECONDS", 1, int, "Retry-After hint given to clients polling a job."),
    Setting(
        "JOB_MODULES",
        "jobs",
        str,
        "Comma-separated modules whose @job handlers are imported at start.",
    ),
    Setting(
        "OIDC_AUDIENCE",
        "",
        str,
        "Audience of the push's OIDC token (default: WORKER_URL); the worker always checks it.",
    ),
    Setting(
        "OIDC_CERTS_URL",
        "https://www.googleapis.com/oauth2/v1/certs",
        str,
        "Where the worker fetches the keys that sign push tokens (the emulator serves its own).",
    ),
    Setting(
        "SLICE_SECONDS",
        540.0,
        float,
        "Longest run of a job in one request; a longer job continues in a new request. "
        "540 fits App Engine automatic scaling (600 s), Cloud Run and HTTP targets (30 min).",
    ),
    Setting(
        "WORKER_TIMEOUT_SECONDS",
        560,
        int,
        "gunicorn --timeout of the worker (gunicorn.conf.py reads it from gunicorn; `make "
        "run` passes slice + dispatch margin + 5): the hard limit of one request.",
    ),
    Setting(
        "PLATFORM_TIMEOUT_SECONDS",
        86400,
        int,
        "The platform's request timeout for the worker (App Engine basic scaling: 24 h; "
        "automatic: 600; Cloud Run: at most 3600).",
    ),
    Setting(
        "HARD_GRACE_SECONDS",
        2.0,
        float,
        "After a job's deadline, how long it may ignore DeadlineExceededError before the "
        "worker process ends itself; 0 disables (tests with the in-process client).",
    ),
    Setting(
        "PROGRESS_INTERVAL_SECONDS",
        1.0,
        float,
        "Least time between two progress writes of one job.",
    ),
    Setting(
        "API_AUTH",
        "none",
        str,
        "How web authenticates clients: `api_key`, `iap`, or `none` (local only: refused "
        "on App Engine and Cloud Run).",
    ),
    Setting(
        "API_KEYS",
        "",
        str,
        "API keys as `name:sha256-hex[:role]`, comma-separated (roles: `read`, `submit` "
        "(default), `admin`); `offload keys new NAME` makes one. Keep it in Secret Manager.",
    ),
    Setting("IAP_AUDIENCE", "", str, "Expected `aud` of IAP's JWT (`/projects/N/apps/ID`)."),
    Setting(
        "IAP_CERTS_URL",
        "https://www.gstatic.com/iap/verify/public_key-jwk",
        str,
        "Where IAP's signing keys (JWK) are fetched.",
    ),
    Setting("IAP_ADMINS", "", str, "Comma-separated IAP user emails with the `admin` role."),
    Setting("CORS_ORIGINS", "", str, "Comma-separated origins allowed by CORS; empty = CORS off."),
    Setting(
        "MAX_PAYLOAD_BYTES", 64 * 1024, int, "Largest job payload (JSON) accepted (413 above)."
    ),
    Setting(
        "JOB_RETENTION_SECONDS",
        7 * 24 * 3600,
        int,
        "Finished jobs (and results) older than this are deleted by `offload jobs expire` "
        "or the worker's cron route; 0 keeps them forever.",
    ),
    Setting(
        "STALE_RUN_SECONDS",
        3600,
        int,
        "The worker's cron route fails a job still `running` this long after its runner's "
        "lease ran out (Cloud Tasks stopped retrying it).",
    ),
    Setting(
        "DEMO_DIR",
        "var/demo",
        str,
        "Folder where the demo jobs keep their own records (demo.long's step executions).",
    ),
    Setting("LOG_LEVEL", "INFO", str, "Lowest severity logged."),
    Setting("LOG_DIR", "var/log", str, "Folder for local JSON log files; empty = stdout only."),
    Setting("LOG_FILE_MAX_BYTES", 10 * 1024 * 1024, int, "Size at which a log file rotates."),
    Setting("LOG_FILE_BACKUPS", 3, int, "Rotated log files kept per service."),
    Setting(
        "WORKER_AUTH",
        "appengine",
        str,
        "How the worker proves a push came from Cloud Tasks: `appengine` (platform task "
        "headers) or `oidc` (verified ID token).",
    ),
)

_BY_KEY = {s.key: s for s in SETTINGS}


def _convert(setting: Setting, raw: Any) -> Any:
    if setting.kind is bool:
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    try:
        return setting.kind(raw)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{ENV_PREFIX}{setting.key}={raw!r} is not a valid {setting.kind.__name__}"
        ) from e


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Defaults, then ``OFFLOAD_*`` environment variables, then ``overrides``."""
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    for setting in SETTINGS:
        raw = env.get(ENV_PREFIX + setting.key)
        if raw is not None:
            config[setting.key] = _convert(setting, raw)
    # Hosted on App Engine (GAE_ENV=standard) or Cloud Run (K_SERVICE): no local defaults.
    # Real Cloud Tasks unless an emulator is named, and no log files on a read-only disk.
    hosted = env.get("GAE_ENV", "").startswith("standard") or bool(env.get("K_SERVICE"))
    config["HOSTED"] = hosted
    if hosted:
        for key in ("TASKS_EMULATOR_HOST", "LOG_DIR"):
            if ENV_PREFIX + key not in env:
                config[key] = ""
    for key, value in (overrides or {}).items():
        known = _BY_KEY.get(key)
        config[key] = _convert(known, value) if known is not None else value
    return config
