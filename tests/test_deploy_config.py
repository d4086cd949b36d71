"""The deployment files agree with the code: app.yaml, worker.yaml, queue.yaml, cron.yaml.

:func:`deploy_problems` reads the files the way App Engine, Cloud Tasks and gunicorn do
(gunicorn's own argument parser over ``gunicorn.conf.py``) and lists every disagreement
with the code; the tests assert that list is empty for the committed files, and that a
deliberately broken copy is caught (so the checks can fail).
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import runpy
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from gunicorn.config import Config as GunicornConfig

from offload.errors import ConfigError
from offload.registry import JobRegistry
from offload.settings import ENV_PREFIX, Settings, load_settings, markdown_table
from offload.slices import worker_timeout_for
from offload.store import migrate
from tests.conftest import app_config
from worker import check_timeouts

ROOT = Path(__file__).resolve().parent.parent
SERVICE_FILES = ("app.yaml", "worker.yaml")
APP_MODULES = {"default": "web.main:app", "worker": "worker.main:app"}
GUNICORN_NAMES = {"default": "web", "worker": "worker"}
# App Engine's request timeout by scaling type (seconds).
PLATFORM_TIMEOUT = {"automatic_scaling": 600, "basic_scaling": 86400, "manual_scaling": 86400}
INSTANCE_CLASS_PREFIX = {"automatic_scaling": "F", "basic_scaling": "B", "manual_scaling": "B"}
# Settings web and worker must agree on (web enqueues what the worker runs and checks).
SHARED_KEYS = (
    "PROJECT_ID",
    "LOCATION",
    "QUEUE",
    "TASK_TARGET",
    "WORKER_SERVICE",
    "TASK_PATH",
    "DISPATCH_MARGIN_SECONDS",
    "SLICE_SECONDS",
    "DATABASE_URL",
    "JOB_MODULES",
    "TASKS_EMULATOR_HOST",
)
# Cloud Tasks limits (shared/CLOUD_TASKS.md).
MAX_RATE_PER_SECOND = 500.0
MAX_BUCKET_SIZE = 500
MAX_CONCURRENT = 5000
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*/\s*([smhd])\s*$")
_AGE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smhd])\s*$")
PLACEHOLDER_KEYS = "__API_KEYS__"  # filled from Secret Manager at deploy time
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Entrypoint:
    """A service's gunicorn command line, as gunicorn itself reads it."""

    argv: list[str]
    config: GunicornConfig
    apps: list[str]

    @property
    def timeout(self) -> int:
        return int(self.config.timeout)


def parse_entrypoint(command: str) -> Entrypoint:
    """Split like a shell, then apply gunicorn.conf.py and the flags as gunicorn does."""
    argv = shlex.split(command.replace("$PORT", "8080"))
    cfg = GunicornConfig()
    args = cfg.parser().parse_args(argv[1:])
    if args.config:
        for key, value in runpy.run_path(str(ROOT / args.config)).items():
            if key in cfg.settings:
                cfg.set(key, value)
    for key, value in vars(args).items():
        if value is not None and key != "args":
            cfg.set(key.lower(), value)
    return Entrypoint(argv=argv, config=cfg, apps=list(args.args))


def parse_rate(text: str) -> float:
    """queue.yaml's ``5/s``, ``1/m`` -> dispatches per second."""
    m = _RATE.match(str(text))
    if not m:
        raise ValueError(f"bad rate {text!r}")
    return float(m.group(1)) / _UNITS[m.group(2)]


def parse_age(text: str) -> float:
    """queue.yaml's ``2d``, ``30m`` -> seconds."""
    m = _AGE.match(str(text))
    if not m:
        raise ValueError(f"bad task_age_limit {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def load_deploy(root: Path = ROOT) -> dict[str, Any]:
    """Every deployment file, parsed, by file name."""
    files = {}
    for name in (*SERVICE_FILES, "queue.yaml", "cron.yaml"):
        path = root / name
        if path.exists():
            files[name] = yaml.safe_load(path.read_text()) or {}
    return files


def scaling_of(service: Mapping[str, Any]) -> str:
    """``automatic_scaling`` (App Engine's default), ``basic_scaling`` or ``manual_scaling``."""
    found = [k for k in PLATFORM_TIMEOUT if k in service]
    return found[0] if len(found) == 1 else "automatic_scaling" if not found else "several"


def first_handler(service: Mapping[str, Any], url: str) -> Mapping[str, Any] | None:
    """The handler App Engine picks for ``url``: the first whose pattern matches it all."""
    for handler in service.get("handlers") or []:
        if re.fullmatch(str(handler["url"]), url):
            return dict(handler)
    return None


SETTING_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields if name != "hosted"}


def service_config(service: Mapping[str, Any]) -> Settings:
    """The settings the service's process would load from its env_variables."""
    env = {str(k): str(v) for k, v in (service.get("env_variables") or {}).items()}
    return load_settings(environ=env)


def job_types(settings: Settings | None = None) -> JobRegistry:
    """The job types a service with ``settings`` (default: the defaults) would load."""
    modules = (settings or load_settings(environ={})).job_modules
    return JobRegistry.from_modules(m.strip() for m in modules.split(","))


def worker_capacity(service: Mapping[str, Any], entry: Entrypoint) -> int | None:
    """Requests the service runs at once across its instances (None: automatic, unbounded)."""
    if "basic_scaling" in service:
        return int(service["basic_scaling"]["max_instances"]) * int(entry.config.workers)
    if "manual_scaling" in service:
        return int(service["manual_scaling"]["instances"]) * int(entry.config.workers)
    return None


def _service_problems(name: str, service: Mapping[str, Any]) -> Iterator[str]:
    svc = service.get("service", "default")
    if service.get("runtime") != "python312":
        yield f"{name}: runtime must be python312"
    try:
        entry = parse_entrypoint(str(service.get("entrypoint", "")))
    except (ValueError, SystemExit) as e:
        yield f"{name}: entrypoint does not parse: {e}"
        return
    if entry.argv[:1] != ["gunicorn"] or entry.config.config != "gunicorn.conf.py":
        yield f"{name}: entrypoint must be `gunicorn -c gunicorn.conf.py ...`"
    if entry.apps != [APP_MODULES.get(svc)]:
        yield f"{name}: service {svc} must start {APP_MODULES.get(svc)}, not {entry.apps}"
    if entry.config.proc_name != GUNICORN_NAMES.get(svc):
        yield f"{name}: --name must be {GUNICORN_NAMES.get(svc)} (it labels the logs)"
    if entry.config.bind != [":8080"]:
        yield f"{name}: gunicorn must bind :$PORT"
    scaling = scaling_of(service)
    if scaling == "several":
        yield f"{name}: more than one scaling section"
        return
    klass = str(service.get("instance_class", "F1"))
    if not klass.startswith(INSTANCE_CLASS_PREFIX[scaling]):
        yield f"{name}: instance_class {klass} does not fit {scaling}"
    if "warmup" not in (service.get("inbound_services") or []):
        yield f"{name}: inbound_services lacks warmup"
    for handler in service.get("handlers") or []:
        if handler.get("secure") != "always":
            yield f"{name}: handler {handler['url']} is not `secure: always`"
    for key in service.get("env_variables") or {}:
        if key not in SETTING_NAMES:
            yield f"{name}: env variable {key} is not a setting of offload/settings.py"
        if key == ENV_PREFIX + "WORKER_TIMEOUT_SECONDS":
            yield f"{name}: {key} comes from gunicorn's --timeout (gunicorn.conf.py), not yaml"
    try:
        config = service_config(service)
    except ConfigError as e:
        yield f"{name}: {e}"
        return
    platform = PLATFORM_TIMEOUT[scaling]
    if svc == "worker":
        if entry.config.worker_class_str != "sync" or entry.config.threads != 1:
            yield f"{name}: the worker needs sync gunicorn workers (deadlines use SIGALRM)"
        if config.platform_timeout_seconds > platform:
            yield (
                f"{name}: OFFLOAD_PLATFORM_TIMEOUT_SECONDS={config.platform_timeout_seconds} "
                f"exceeds {scaling}'s request timeout {platform}"
            )
        if config.worker_auth != "appengine":
            yield f"{name}: on App Engine the worker trusts the platform's task headers"
        task = first_handler(service, config.task_path)
        if task is None or task.get("login") != "admin":
            yield f"{name}: the task route {config.task_path} is not behind login: admin"
        yield from _timeout_follows_the_slice(name, entry, config)
        try:
            check_timeouts(
                config.model_copy(
                    update={
                        "worker_timeout_seconds": entry.timeout,
                        "platform_timeout_seconds": min(config.platform_timeout_seconds, platform),
                    }
                ),
                job_types(config),
            )
        except ConfigError as e:
            yield f"{name}: {e}"
    else:
        if config.api_auth == "none":
            yield f"{name}: OFFLOAD_API_AUTH=none leaves the API open to anyone"
        if not config.enqueue_timeout_seconds + 10 <= entry.timeout <= platform:
            yield (
                f"{name}: --timeout {entry.timeout} must leave room for a CreateTask "
                f"({config.enqueue_timeout_seconds:g} s) and stay within {platform} s"
            )
    if config.tasks_emulator_host:
        yield f"{name}: OFFLOAD_TASKS_EMULATOR_HOST must be empty (real Cloud Tasks)"
    if config.log_dir:
        yield f"{name}: OFFLOAD_LOG_DIR must be empty (App Engine's disk is read-only)"


def _timeout_follows_the_slice(name: str, entry: Entrypoint, config: Settings) -> Iterator[str]:
    """The worker's --timeout sets its lease: far past the slice, recovery waits for it."""
    if entry.timeout > worker_timeout_for(config) + 30:
        yield (
            f"{name}: --timeout {entry.timeout} is far past the slice "
            f"(OFFLOAD_SLICE_SECONDS={config.slice_seconds:g} + margin + 5 = "
            f"{worker_timeout_for(config)}): a killed run's job would wait that long"
        )


def _queue_problems(files: Mapping[str, Any], services: Mapping[str, Any]) -> Iterator[str]:
    queues = {q.get("name"): q for q in files.get("queue.yaml", {}).get("queue") or []}
    for name, q in queues.items():
        where = f"queue.yaml {name}"
        if not re.fullmatch(r"[A-Za-z0-9-]{1,100}", str(name)):
            yield f"{where}: bad queue name"
        target = q.get("target")
        if str(target).rpartition(".")[2] not in services:
            yield f"{where}: target {target} is no service of {', '.join(SERVICE_FILES)}"
        try:
            rate = parse_rate(q.get("rate", "5/s"))
            rp = q.get("retry_parameters") or {}
            if "task_age_limit" in rp:
                parse_age(rp["task_age_limit"])
            numbers = {
                "bucket_size": int(q.get("bucket_size", 5)),
                "max_concurrent_requests": int(q.get("max_concurrent_requests", 1000)),
                "task_retry_limit": int(rp.get("task_retry_limit", -1)),
                "min_backoff_seconds": float(rp.get("min_backoff_seconds", 0.1)),
                "max_backoff_seconds": float(rp.get("max_backoff_seconds", 3600)),
                "max_doublings": int(rp.get("max_doublings", 16)),
            }
        except (TypeError, ValueError) as e:
            yield f"{where}: {e}"
            continue
        if not 0 < rate <= MAX_RATE_PER_SECOND:
            yield f"{where}: rate {rate:g}/s outside (0, {MAX_RATE_PER_SECOND:g}]"
        if not 1 <= numbers["bucket_size"] <= MAX_BUCKET_SIZE:
            yield f"{where}: bucket_size outside [1, {MAX_BUCKET_SIZE}]"
        if not 1 <= numbers["max_concurrent_requests"] <= MAX_CONCURRENT:
            yield f"{where}: max_concurrent_requests outside [1, {MAX_CONCURRENT}]"
        if not 0.1 <= numbers["min_backoff_seconds"] <= numbers["max_backoff_seconds"] <= 86400:
            yield f"{where}: backoffs must satisfy 0.1 <= min <= max <= 1 day"
        if not 0 <= numbers["max_doublings"] <= 16:
            yield f"{where}: max_doublings outside [0, 16]"
        limit = numbers["task_retry_limit"]
        default = service_config(services["worker"]).queue if "worker" in services else None
        for jt in job_types():
            if (jt.queue or default) != name:
                continue  # routed to another queue
            if limit != -1 and jt.max_attempts > limit:
                yield f"{where}: task_retry_limit {limit} cuts job {jt.name}'s {jt.max_attempts}"
        service = services.get(str(target).rpartition(".")[2])
        try:
            entry = None if service is None else parse_entrypoint(service["entrypoint"])
        except (ValueError, SystemExit):
            entry = None  # reported with the service
        if service is not None and entry is not None:
            capacity = worker_capacity(service, entry)
            if capacity is not None and numbers["max_concurrent_requests"] > capacity:
                yield (
                    f"{where}: max_concurrent_requests {numbers['max_concurrent_requests']} "
                    f"exceeds {target}'s {capacity} processes (pushes would wait in a "
                    "backlog while their dispatch_deadline runs)"
                )
    for jt in job_types():
        if jt.queue and jt.queue not in queues:
            yield f"job {jt.name}: its queue {jt.queue} is not in queue.yaml"
    for svc, service in services.items():
        config = service_config(service)
        if config.queue not in queues:
            yield f"{svc}: OFFLOAD_QUEUE {config.queue} is not in queue.yaml"
        if config.worker_service not in services:
            yield f"{svc}: OFFLOAD_WORKER_SERVICE {config.worker_service} is no service"


def _cron_problems(files: Mapping[str, Any], services: Mapping[str, Any]) -> Iterator[str]:
    for entry in files.get("cron.yaml", {}).get("cron") or []:
        target = str(entry.get("target", "default"))
        url = str(entry.get("url", ""))
        if not entry.get("schedule"):
            yield f"cron.yaml {url}: no schedule"
        if target not in services:
            yield f"cron.yaml {url}: target {target} is no service"
            continue
        handler = first_handler(services[target], url.partition("?")[0])
        if handler is None or handler.get("login") != "admin":
            yield f"cron.yaml {url}: not behind login: admin in service {target}"


def deploy_problems(files: Mapping[str, Any]) -> list[str]:
    """Every way the deployment files disagree with the code or the platform's limits."""
    problems: list[str] = []
    services: dict[str, Any] = {}
    for name in SERVICE_FILES:
        service = files.get(name)
        if service is None:
            problems.append(f"{name} is missing")
            continue
        services[str(service.get("service", "default"))] = service
        problems.extend(_service_problems(name, service))
    if "default" not in services or "worker" not in services:
        return [*problems, "need services default (web) and worker"]
    configs = {svc: service_config(s) for svc, s in services.items()}
    for key in SHARED_KEYS:
        if getattr(configs["default"], key.lower()) != getattr(configs["worker"], key.lower()):
            problems.append(f"web and worker disagree on OFFLOAD_{key}")
    problems.extend(_queue_problems(files, services))
    problems.extend(_cron_problems(files, services))
    return problems


# -- the committed files -----------------------------------------------------------


@pytest.fixture
def files() -> dict[str, Any]:
    """A fresh copy of the committed deployment files, parsed (tests may break it)."""
    return copy.deepcopy(load_deploy())


def test_the_committed_deployment_files_agree_with_the_code(files: dict[str, Any]) -> None:
    assert deploy_problems(files) == []


def test_the_readme_configuration_table_is_the_settings_class() -> None:
    """python -m offload.settings prints the table the README must hold."""
    assert markdown_table() in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", SERVICE_FILES)
def test_each_entrypoint_starts_its_app_through_gunicorn(name: str, tmp_path: Path) -> None:
    """gunicorn --check-config imports module:app with the file's own environment."""
    service = load_deploy()[name]
    entry = parse_entrypoint(service["entrypoint"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)},
        **{str(k): str(v) for k, v in service["env_variables"].items()},
        # What differs from production: no Cloud SQL, no credentials, nothing in the repo.
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp_path / 'offload.db'}",
        "OFFLOAD_LOG_DIR": "",
        "OFFLOAD_TASKS_EMULATOR_HOST": "127.0.0.1:9",  # a real client would want ADC
        # What App Engine sets, so hosted-only checks (e.g. no API without auth) run.
        "GAE_ENV": "standard",
        # gunicorn.conf.py's on_starting passes --timeout; --check-config skips the hook.
        "OFFLOAD_WORKER_TIMEOUT_SECONDS": str(entry.timeout),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if PLACEHOLDER_KEYS in env.get("OFFLOAD_API_KEYS", ""):
        env["OFFLOAD_API_KEYS"] = "ci:" + hashlib.sha256(b"ci").hexdigest()
    if env.get("OFFLOAD_CONSOLE_SECRET_KEY") == "__CONSOLE_SECRET_KEY__":
        env["OFFLOAD_CONSOLE_SECRET_KEY"] = "ci-console-session-key-" + "0" * 32
    scaling = scaling_of(service)
    env["OFFLOAD_PLATFORM_TIMEOUT_SECONDS"] = str(
        min(int(env.get("OFFLOAD_PLATFORM_TIMEOUT_SECONDS", 86400)), PLATFORM_TIMEOUT[scaling])
    )
    # The deploy step runs the migrations before the new version serves (docs/DEPLOY.md).
    migrate.upgrade(env["OFFLOAD_DATABASE_URL"])
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", *entry.argv[1:], "--check-config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_gunicorn_conf_passes_the_worker_timeout_to_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = parse_entrypoint(load_deploy()["worker.yaml"]["entrypoint"])
    monkeypatch.delenv("OFFLOAD_WORKER_TIMEOUT_SECONDS", raising=False)
    entry.config.on_starting(SimpleNamespace(cfg=entry.config))
    assert os.environ["OFFLOAD_WORKER_TIMEOUT_SECONDS"] == str(entry.timeout)


def test_the_worker_routes_the_yaml_files_point_at_exist(tmp_path: Path) -> None:
    from worker import create_app

    files = load_deploy()
    config = service_config(files["worker.yaml"])
    app = create_app(app_config(tmp_path))
    try:
        urls = app.url_map.bind("localhost")
        urls.match(config.task_path, method="POST")
        urls.match("/_ah/warmup", method="GET")
        for entry in files.get("cron.yaml", {}).get("cron") or []:
            urls.match(str(entry["url"]).partition("?")[0], method="GET")  # cron sends GET
    finally:
        app.extensions["offload.store"].dispose()


def test_the_emulator_loads_queue_yaml_as_cloud_tasks_would() -> None:
    from emulator import queueyaml

    queues = queueyaml.load(str(ROOT / "queue.yaml"), location="projects/p/locations/l")
    assert [q.name.rpartition("/")[2] for q in queues] == ["offload-jobs", "offload-reports"]
    assert all(q.app_engine_routing_override.service == "worker" for q in queues)


def test_every_queue_a_job_type_names_is_in_queue_yaml_and_the_worker_checks_it(
    files: dict[str, Any],
) -> None:
    from pydantic import BaseModel

    from offload.registry import job
    from worker.queues import check_queues

    names = {q["name"] for q in files["queue.yaml"]["queue"]}
    assert {t.queue for t in job_types() if t.queue} <= names
    assert "offload-reports" in {t.queue for t in job_types()}

    @job("x.elsewhere", payload=BaseModel, queue="offload-nowhere")
    def elsewhere(ctx: Any, payload: Any) -> None: ...

    registry = JobRegistry([elsewhere])  # type: ignore[list-item]
    settings = Settings(queue_yaml=str(ROOT / "queue.yaml"))
    with pytest.raises(ConfigError, match="offload-nowhere"):
        check_queues(settings, registry)
    files["queue.yaml"]["queue"] = [
        q for q in files["queue.yaml"]["queue"] if q["name"] != "offload-reports"
    ]
    assert any("offload-reports" in p for p in deploy_problems(files))


# -- broken copies are caught ------------------------------------------------------


def _set_entrypoint_flag(service: dict[str, Any], flag: str, value: str) -> None:
    argv = shlex.split(service["entrypoint"])
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv[-1:-1] = [flag, value]
    service["entrypoint"] = shlex.join(argv).replace("'$PORT'", "$PORT")


def _caught(files: dict[str, Any], fragment: str) -> None:
    problems = deploy_problems(files)
    assert any(fragment in p for p in problems), problems


def test_a_worker_gunicorn_timeout_below_a_dispatch_deadline_is_caught(
    files: dict[str, Any],
) -> None:
    _set_entrypoint_flag(files["worker.yaml"], "--timeout", "20")
    _caught(files, "exceeds the worker's gunicorn timeout")


def test_a_worker_on_automatic_scaling_with_a_24_hour_platform_timeout_is_caught(
    files: dict[str, Any],
) -> None:
    worker = files["worker.yaml"]
    del worker["basic_scaling"]
    worker["automatic_scaling"] = {"max_instances": 5}
    worker["instance_class"] = "F2"
    _caught(files, "exceeds automatic_scaling's request timeout 600")


def test_threaded_or_async_worker_processes_are_caught(files: dict[str, Any]) -> None:
    _set_entrypoint_flag(files["worker.yaml"], "--threads", "4")
    _caught(files, "sync gunicorn workers")
    files = load_deploy()
    _set_entrypoint_flag(files["worker.yaml"], "-k", "gevent")
    _caught(files, "sync gunicorn workers")


def test_an_entrypoint_without_the_gunicorn_conf_or_with_the_wrong_app_is_caught(
    files: dict[str, Any],
) -> None:
    files["app.yaml"]["entrypoint"] = "gunicorn --bind :$PORT worker.main:app"
    _caught(files, "gunicorn -c gunicorn.conf.py")
    _caught(files, "must start web.main:app")


def test_an_unparsable_entrypoint_is_caught(files: dict[str, Any]) -> None:
    files["worker.yaml"]["entrypoint"] = "gunicorn -c gunicorn.conf.py 'worker.main:app"
    _caught(files, "entrypoint does not parse")


def test_a_queue_target_that_is_no_service_is_caught(files: dict[str, Any]) -> None:
    files["queue.yaml"]["queue"][0]["target"] = "workers"
    _caught(files, "target workers is no service")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("rate", "501/s", "rate 501/s outside"),
        ("rate", "fast", "bad rate"),
        ("bucket_size", 501, "bucket_size outside"),
        ("max_concurrent_requests", 5001, "max_concurrent_requests outside"),
        ("max_concurrent_requests", 41, "exceeds worker's 40 processes"),
    ],
)
def test_queue_values_beyond_cloud_tasks_limits_are_caught(
    files: dict[str, Any], field: str, value: object, fragment: str
) -> None:
    files["queue.yaml"]["queue"][0][field] = value
    _caught(files, fragment)


def test_insane_backoffs_and_a_retry_limit_below_a_jobs_attempts_are_caught(
    files: dict[str, Any],
) -> None:
    retry = files["queue.yaml"]["queue"][0]["retry_parameters"]
    retry["min_backoff_seconds"], retry["max_backoff_seconds"] = 600, 60
    retry["task_retry_limit"] = 1
    _caught(files, "backoffs must satisfy")
    _caught(files, "task_retry_limit 1 cuts job")


def test_unknown_env_variables_and_disagreeing_services_are_caught(
    files: dict[str, Any],
) -> None:
    files["app.yaml"]["env_variables"]["OFFLOAD_DATABASE_PASSWORD"] = "x"
    files["worker.yaml"]["env_variables"]["OFFLOAD_DISPATCH_MARGIN_SECONDS"] = "30"
    _caught(files, "OFFLOAD_DATABASE_PASSWORD is not a setting")
    _caught(files, "disagree on OFFLOAD_DISPATCH_MARGIN_SECONDS")


def test_a_task_or_cron_route_open_to_the_internet_is_caught(files: dict[str, Any]) -> None:
    for handler in files["worker.yaml"]["handlers"]:
        handler.pop("login", None)
    _caught(files, "is not behind login: admin")
    _caught(files, "cron.yaml /cron/expire: not behind login: admin")


def test_a_worker_timeout_that_does_not_follow_the_slice_is_caught(
    files: dict[str, Any],
) -> None:
    _set_entrypoint_flag(files["worker.yaml"], "--timeout", "3600")
    _caught(files, "is far past the slice")


def test_web_and_worker_with_different_slices_are_caught(files: dict[str, Any]) -> None:
    files["worker.yaml"]["env_variables"]["OFFLOAD_SLICE_SECONDS"] = "300"
    _caught(files, "disagree on OFFLOAD_SLICE_SECONDS")


def test_a_web_timeout_shorter_than_an_enqueue_is_caught(files: dict[str, Any]) -> None:
    _set_entrypoint_flag(files["app.yaml"], "--timeout", "5")
    _caught(files, "must leave room for a CreateTask")


# -- docs/DEPLOY.md's Cloud Run commands -------------------------------------------


def _cloud_run_worker() -> tuple[dict[str, Any], Entrypoint, int]:
    """The worker's env file, GOOGLE_ENTRYPOINT and Cloud Run --timeout from DEPLOY.md."""
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    env_block = re.search(r"offload-worker\.env\.yaml <<EOF\n(.*?)\nEOF", doc, re.S)
    command = re.search(r"gcloud run deploy offload-worker .*?(?:\n\n|```)", doc, re.S)
    assert env_block and command, "DEPLOY.md lost the Cloud Run worker commands"
    env = yaml.safe_load(re.sub(r"\$\{(\w+)\}", r"\1", env_block.group(1)))
    entrypoint = re.search(r"GOOGLE_ENTRYPOINT=([^|']+)", command.group(0))
    run_timeout = re.search(r"--timeout=(\d+)", command.group(0))
    assert entrypoint and run_timeout
    return env, parse_entrypoint(entrypoint.group(1)), int(run_timeout.group(1))


def test_deploy_md_names_only_known_settings() -> None:
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert sorted(set(re.findall(r"\bOFFLOAD_[A-Z_]+\b", doc)) - SETTING_NAMES) == []


def test_deploy_md_cloud_run_worker_passes_the_start_up_timeout_check() -> None:
    env, entry, run_timeout = _cloud_run_worker()
    config = load_settings(environ={k: str(v) for k, v in env.items()})
    assert config.task_target == "http" and config.worker_auth == "oidc"
    assert entry.config.worker_class_str == "sync" and entry.config.threads == 1
    assert config.platform_timeout_seconds <= run_timeout <= 3600  # Cloud Run's maximum
    check_timeouts(
        config.model_copy(update={"worker_timeout_seconds": entry.timeout}), job_types(config)
    )
    assert list(_timeout_follows_the_slice("DEPLOY.md", entry, config)) == []


def test_deploy_md_creates_every_queue_with_queue_yaml_s_values() -> None:
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    creates = re.findall(r"gcloud tasks queues create (\S+) (.*?)(?=\ngcloud|\n```)", doc, re.S)
    queues = {q["name"]: q for q in load_deploy()["queue.yaml"]["queue"]}
    assert sorted(name for name, _ in creates) == sorted(queues)
    for name, text in creates:
        queue = queues[name]
        flags = dict(re.findall(r"--([a-z-]+)=(\S+)", text))
        retry = queue["retry_parameters"]
        assert float(flags["max-dispatches-per-second"]) == parse_rate(queue["rate"])
        assert int(flags["max-concurrent-dispatches"]) == queue["max_concurrent_requests"]
        assert int(flags["max-attempts"]) == retry["task_retry_limit"]
        assert flags["max-retry-duration"] == f"{parse_age(retry['task_age_limit']):.0f}s"
        assert flags["min-backoff"] == f"{retry['min_backoff_seconds']}s"
        assert flags["max-backoff"] == f"{retry['max_backoff_seconds']}s"
        assert int(flags["max-doublings"]) == retry["max_doublings"]
