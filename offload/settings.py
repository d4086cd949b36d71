"""The one place that reads the environment: every setting, typed.

A setting's value comes from, last wins: the documented default (the embedded local
set-up: emulator, SQLite, log files under ``var/``), the environment variable
``OFFLOAD_<NAME>``, then what a test or an app factory passes. The README's
configuration table is this class (a test compares them; ``python -m offload.settings``
prints it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from offload.errors import ConfigError
from offload.platform import LOCAL, detect_platform

__all__ = ["ENV_PREFIX", "Settings", "load_settings", "markdown_table"]

ENV_PREFIX = "OFFLOAD_"
# Values never echoed in an error message.
_SECRET = frozenset({"database_url", "api_keys", "webhook_secret", "console_secret_key"})
# The environment load_settings reads (a test may pass its own mapping).
_ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("offload_environ", default=os.environ)


class Settings(BaseSettings):
    """Every ``OFFLOAD_*`` setting with its type, default and meaning."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, frozen=True, extra="ignore"
    )

    host: str = Field(
        "127.0.0.1",
        description="`make run`: address every local process binds.",
    )
    web_port: int = Field(
        8080,
        ge=1,
        le=65535,
        description="`make run`: port of the web service.",
    )
    worker_port: int = Field(
        8081,
        ge=1,
        le=65535,
        description="`make run`: port of the worker service.",
    )
    emulator_port: int = Field(
        8123,
        ge=1,
        le=65535,
        description="`make run`: gRPC port of the Cloud Tasks emulator.",
    )
    emulator_http_port: int = Field(
        8124,
        ge=1,
        le=65535,
        description="`make run`: the emulator's HTTP port (OIDC certs).",
    )
    web_processes: int = Field(
        4,
        ge=1,
        description="`make run`: gunicorn worker processes of web.",
    )
    worker_processes: int = Field(
        2,
        ge=1,
        description="`make run`: gunicorn worker processes of worker.",
    )
    web_threads: int = Field(
        128,
        ge=1,
        description=(
            "Threads per web process (gthread; `make run` passes it, elsewhere gunicorn's "
            "--threads sets it): at most three quarters of them wait on events, the rest "
            "stay for submits."
        ),
    )
    web_instances: int = Field(
        1,
        ge=1,
        le=10,
        description=(
            "`make run`: web instances, each its own gunicorn; above 1 a round-robin front "
            "(`offload.front`) takes WEB_PORT and instance i listens on WEB_INSTANCE_PORT + i - 1."
        ),
    )
    web_instance_port: int = Field(
        8090,
        ge=1,
        le=65535,
        description="`make run`: port of the first web instance when there are several.",
    )
    worker_instances: int = Field(
        1,
        ge=1,
        le=10,
        description=(
            "`make run`: worker instances, each its own gunicorn on WORKER_PORT + i - 1; the "
            "emulator spreads pushes over them, as App Engine does."
        ),
    )
    emulator_data_file: str = Field(
        "var/emulator-data.sqlite3",
        description="`make run`: the emulator's SQLite database of queues and tasks, written "
        "before each answer; an old `.json` data file beside it is migrated once.",
    )
    queue_yaml: str = Field(
        "queue.yaml",
        description="`make run`: queue definitions the emulator loads.",
    )
    project_id: str = Field(
        "offload-local",
        description="Google Cloud project id (trace names, queue path).",
    )
    location: str = Field(
        "us-central1",
        description="Cloud Tasks location of the queue.",
    )
    queue: str = Field(
        "offload-jobs",
        description="Cloud Tasks queue id jobs are enqueued on.",
    )
    tasks_emulator_host: str = Field(
        "127.0.0.1:8123",
        description="host:port of the local Cloud Tasks emulator; empty = real Cloud Tasks.",
    )
    task_target: Literal["appengine", "http"] = Field(
        "appengine",
        description=(
            "`appengine` (App Engine target, service WORKER_SERVICE) or `http` (HTTP target "
            "WORKER_URL with an OIDC token)."
        ),
    )
    worker_service: str = Field(
        "worker",
        description="App Engine service the tasks are routed to.",
    )
    worker_url: str = Field(
        "",
        description="Base URL of the worker for HTTP targets (Cloud Run).",
    )
    task_path: str = Field(
        "/tasks/run",
        description="Path of the worker's push handler.",
    )
    task_service_account: str = Field(
        "",
        description="Service account whose OIDC token Cloud Tasks attaches to HTTP-target pushes.",
    )
    enqueue_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Total time budget of one CreateTask call, retries included.",
    )
    breaker_failure_threshold: int = Field(
        1,
        ge=1,
        description=(
            "Cloud Tasks calls in a row that must fail (no answer in time) before web stops "
            "waiting on it: submits are then recorded with their wake-up pending."
        ),
    )
    breaker_reset_seconds: float = Field(
        2.0,
        gt=0,
        description="How long the circuit stays open before one trial call to Cloud Tasks.",
    )
    breaker_probe_timeout_seconds: float = Field(
        1.0,
        gt=0,
        description=(
            "Time budget of that trial call (a healthy Cloud Tasks answers in milliseconds)."
        ),
    )
    reconcile_grace_seconds: float = Field(
        30.0,
        ge=0,
        description=(
            "A job's wake-up not yet seen in Cloud Tasks is looked for after this long (above "
            "the enqueue budget); a dead run's task after its lease plus this."
        ),
    )
    reconcile_recheck_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "How often the reconciler checks that a queued job's task is still in Cloud Tasks."
        ),
    )
    reconcile_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="`make run`: seconds between two reconciler passes (production: cron.yaml).",
    )
    reconcile_batch: int = Field(
        1000,
        ge=1,
        description="Most jobs one reconciler pass looks at.",
    )
    store_retry_seconds: float = Field(
        10.0,
        ge=0,
        description=(
            "How long the worker retries a store call on a fresh connection when the store "
            "connection drops (claim, reads, the final write)."
        ),
    )
    dispatch_margin_seconds: float = Field(
        15.0,
        ge=0,
        description="Added to a job's budget for the task's dispatch_deadline (grace to answer).",
    )
    database_url: SecretStr = Field(
        SecretStr("sqlite:///var/offload.db"),
        description="SQLAlchemy URL of the job store (sqlite:///path or postgresql+psycopg://...).",
    )
    database_pool_size: int = Field(
        5,
        ge=1,
        description="Connections per process for PostgreSQL.",
    )
    max_body_bytes: int = Field(
        262_144,
        ge=1,
        description="Largest request body accepted (413 above).",
    )
    page_size_max: int = Field(
        100,
        ge=1,
        description="Largest page `GET /jobs?limit=` returns.",
    )
    poll_after_seconds: int = Field(
        1,
        ge=0,
        description="Retry-After hint given to clients polling a job.",
    )
    job_modules: str = Field(
        "jobs",
        description="Comma-separated modules whose @job handlers are imported at start.",
    )
    oidc_audience: str = Field(
        "",
        description=(
            "Audience of the push's OIDC token (default: WORKER_URL); the worker always checks it."
        ),
    )
    oidc_certs_url: str = Field(
        "https://www.googleapis.com/oauth2/v1/certs",
        description=(
            "Where the worker fetches the keys that sign push tokens (the emulator serves its own)."
        ),
    )
    slice_seconds: float = Field(
        540.0,
        gt=0,
        description=(
            "Longest run of a job in one request; a longer job continues in a new request. "
            "540 fits App Engine automatic scaling (600 s), Cloud Run and HTTP targets "
            "(30 min). Set the same value in web and worker."
        ),
    )
    worker_timeout_seconds: int = Field(
        560,
        ge=1,
        description=(
            "gunicorn --timeout of the worker (gunicorn.conf.py reads it from gunicorn; "
            "`make run` passes slice + dispatch margin + 5): the hard limit of one request."
        ),
    )
    platform_timeout_seconds: int = Field(
        86_400,
        ge=1,
        description=(
            "The platform's request timeout for the worker (App Engine basic scaling: 24 h; "
            "automatic: 600; Cloud Run: at most 3600)."
        ),
    )
    hard_grace_seconds: float = Field(
        2.0,
        ge=0,
        description=(
            "After a job's deadline, how long it may ignore DeadlineExceededError before the "
            "worker process ends itself; 0 disables (tests with the in-process client)."
        ),
    )
    progress_interval_seconds: float = Field(
        1.0,
        ge=0,
        description="Least time between two progress writes of one job.",
    )
    api_auth: Literal["api_key", "iap", "none"] = Field(
        "none",
        description=(
            "How web authenticates clients: `api_key`, `iap`, or `none` (local only: refused on "
            "App Engine and Cloud Run)."
        ),
    )
    api_keys: str = Field(
        "",
        description=(
            "API keys as `name:sha256-hex[:role]`, comma-separated (roles: `read`, `submit` "
            "(default), `admin`); `offload keys new NAME` makes one. Keep it in Secret Manager."
        ),
    )
    iap_audience: str = Field(
        "",
        description="Expected `aud` of IAP's JWT (`/projects/N/apps/ID`).",
    )
    iap_certs_url: str = Field(
        "https://www.gstatic.com/iap/verify/public_key-jwk",
        description="Where IAP's signing keys (JWK) are fetched.",
    )
    iap_admins: str = Field(
        "",
        description="Comma-separated IAP user emails with the `admin` role.",
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins allowed by CORS; empty = CORS off.",
    )
    max_payload_bytes: int = Field(
        65_536,
        ge=1,
        description="Largest job payload (JSON) accepted (413 above).",
    )
    job_retention_seconds: int = Field(
        604_800,
        ge=0,
        description=(
            "Finished jobs (and results) older than this are deleted by `offload jobs expire` or "
            "the worker's cron route; 0 keeps them forever."
        ),
    )
    stale_run_seconds: int = Field(
        3600,
        ge=0,
        description=(
            "The worker's cron route fails a job still `running` this long after its runner's "
            "lease ran out (Cloud Tasks stopped retrying it)."
        ),
    )
    demo_dir: str = Field(
        "var/demo",
        description=(
            "Folder where the demo jobs keep their own records (demo.long's step executions)."
        ),
    )
    events_poll_seconds: float = Field(
        0.2,
        gt=0,
        description=(
            "How often each web process looks for new job events while requests wait on them "
            "(one query per process, whatever the number of waiters)."
        ),
    )
    events_keepalive_seconds: float = Field(
        15.0,
        gt=0,
        description="Seconds between keep-alive comments on an idle event stream.",
    )
    stream_max_seconds: float = Field(
        280.0,
        gt=0,
        description=(
            "Longest an event stream stays open (below the platform's request timeout: "
            "Cloud Run's default 300 s); the client resumes with Last-Event-ID."
        ),
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description=(
            "Signing secret of webhooks, `whsec_` + base64 (Standard Webhooks); empty = "
            "submissions with `notify` are refused. Keep it in Secret Manager."
        ),
    )
    webhook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Time budget of one webhook POST (connect and answer).",
    )
    webhook_max_attempts: int = Field(
        20,
        ge=1,
        description=(
            "Sends of one webhook before it is given up (`failed`); Cloud Tasks spaces them "
            "with the queue's backoff (queue.yaml's: about 35 minutes for 20)."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO",
        description="Lowest severity logged.",
    )
    log_dir: str = Field(
        "var/log",
        description="Folder for local JSON log files; empty = stdout only.",
    )
    log_file_max_bytes: int = Field(
        10_485_760,
        ge=0,
        description="Size at which a log file rotates.",
    )
    log_file_backups: int = Field(
        3,
        ge=0,
        description="Rotated log files kept per service.",
    )
    worker_auth: Literal["appengine", "oidc"] = Field(
        "appengine",
        description=(
            "How the worker proves a push came from Cloud Tasks: `appengine` (App Engine's task "
            "headers: believed on App Engine, and locally only from loopback; refused at start "
            "on Cloud Run or another host) or `oidc` (verified ID token). Pushes must name a "
            "configured queue."
        ),
    )

    console_secret_key: SecretStr = Field(
        SecretStr(""),
        description=(
            "Signs the console's session cookies (random, 32+ characters; keep it in Secret "
            "Manager). Required on App Engine and Cloud Run with `api_key` or `iap`; locally, "
            "empty = read from (or first made in) `OFFLOAD_CONSOLE_SECRET_KEY_FILE`."
        ),
    )
    console_secret_key_file: str = Field(
        "var/console-secret-key",
        description=(
            "Local only: where the console's session key is kept when "
            "`OFFLOAD_CONSOLE_SECRET_KEY` is empty, so sessions survive restarts and span "
            "processes."
        ),
    )

    # Not settings: where this runs (offload.platform) and whether that is a hosting
    # platform (App Engine, Cloud Run, another host) rather than a developer's machine.
    hosted: bool = Field(False, exclude=True)
    platform: str = Field(LOCAL, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """What a caller passes, then the environment (no .env files, no secrets dir)."""
        return (init_settings, _MappingEnv(settings_cls, _ENVIRON.get()))

    def as_config(self) -> dict[str, Any]:
        """The settings under their upper-case keys, for Flask's ``app.config``."""
        values = {name.upper(): getattr(self, name) for name in type(self).model_fields}
        values["DATABASE_URL"] = self.database_url.get_secret_value()
        values["WEBHOOK_SECRET"] = self.webhook_secret.get_secret_value()
        return values


class _MappingEnv(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items() if k.startswith(ENV_PREFIX)}


def _explain(error: ValidationError) -> ConfigError:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        shown = "" if name in _SECRET else f"={item.get('input')!r}"
        problems.append(f"{ENV_PREFIX}{name.upper()}{shown}: {item['msg']}")
    return ConfigError("invalid settings: " + "; ".join(problems))


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then ``OFFLOAD_*`` variables of ``environ``, then ``overrides``.

    ``overrides`` may name settings in upper case (``{"DATABASE_URL": ...}``, as Flask's
    config does); keys that are not settings are ignored here.
    """
    env = os.environ if environ is None else environ
    fields = Settings.model_fields
    init = {k.lower(): v for k, v in (overrides or {}).items() if k.lower() in fields}
    # Hosted (App Engine, Cloud Run, another platform: offload.platform): no local defaults.
    # Real Cloud Tasks unless an emulator is named, and no log files on a read-only disk.
    platform = detect_platform(env)
    init.setdefault("platform", platform)
    hosted = platform != LOCAL
    if hosted:
        for name in ("tasks_emulator_host", "log_dir"):
            if ENV_PREFIX + name.upper() not in env:
                init.setdefault(name, "")
    init.setdefault("hosted", hosted)

    token = _ENVIRON.set(env)
    try:
        return Settings(**init)
    except ValidationError as e:
        raise _explain(e) from None
    finally:
        _ENVIRON.reset(token)


def markdown_table() -> str:
    """The README's configuration table, from the class."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.exclude:
            continue
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        shown = "(empty)" if default == "" else f"`{default}`"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
