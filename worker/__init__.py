"""The worker: receives Cloud Tasks pushes and runs jobs under their deadlines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask

from offload import fanin, readiness, webhook_dispatch
from offload.enqueue import TaskQueue, dispatch_deadline_for
from offload.errors import ConfigError
from offload.flaskapp import base_app, get_settings, get_store
from offload.readiness import Probe, store_check
from offload.registry import JobType, get_registry
from offload.settings import Settings
from offload.slices import slice_seconds
from worker import cron, tasks, webhooks
from worker.auth import make_authenticator
from worker.queues import check_queues, declared_queues

__all__ = ["check_timeouts", "create_app"]


def check_timeouts(settings: Settings, job_types: Iterable[JobType]) -> None:
    """Refuse a configuration where a run of a job does not fit inside every outer limit.

    A run lasts the slice, or the job's budget if shorter; run + hard grace <
    dispatch_deadline <= gunicorn --timeout and the platform's request timeout, or a
    run is killed, or Cloud Tasks gives up on it, before its own deadline is caught.
    """
    target = settings.task_target
    margin = settings.dispatch_margin_seconds
    grace = settings.hard_grace_seconds
    gunicorn_timeout = settings.worker_timeout_seconds
    platform = settings.platform_timeout_seconds
    slice_ = slice_seconds(settings)
    problems = []
    if grace >= margin:
        problems.append(
            f"OFFLOAD_HARD_GRACE_SECONDS={grace:g} must be below "
            f"OFFLOAD_DISPATCH_MARGIN_SECONDS={margin:g}"
        )
    for jt in job_types:
        run = min(jt.deadline_seconds, slice_)
        dispatch = dispatch_deadline_for(run, margin, target)
        what = f"budget {run:g}s" if run < slice_ else f"slice OFFLOAD_SLICE_SECONDS={run:g}"
        if run + grace >= dispatch:
            problems.append(
                f"job {jt.name}: {what} + grace {grace:g}s is not below "
                f"its dispatch_deadline {dispatch:g}s (Cloud Tasks' maximum for {target} targets)"
            )
        if dispatch > gunicorn_timeout:
            problems.append(
                f"job {jt.name}: dispatch_deadline {dispatch:g}s ({what} + margin) exceeds the "
                f"worker's gunicorn timeout OFFLOAD_WORKER_TIMEOUT_SECONDS={gunicorn_timeout:g}"
            )
        if dispatch > platform:
            problems.append(
                f"job {jt.name}: dispatch_deadline {dispatch:g}s exceeds the platform's request "
                f"timeout OFFLOAD_PLATFORM_TIMEOUT_SECONDS={platform:g}"
            )
    if problems:
        raise ConfigError("inconsistent timeouts: " + "; ".join(problems))


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the worker service; ``config`` overrides defaults and the environment."""
    app = base_app(__name__, "worker", config)
    check_timeouts(get_settings(app), get_registry(app))
    check_queues(get_settings(app), get_registry(app))
    app.extensions["offload.queues"] = declared_queues(get_settings(app), get_registry(app))
    app.extensions["offload.auth"] = make_authenticator(
        get_settings(app), app.extensions["offload.queues"]
    )
    app.register_blueprint(tasks.bp)
    app.register_blueprint(cron.bp)
    # Finishing a job with a notify URL creates its webhook task (and the task's route);
    # continuations and the reconciler's cron route create tasks too.
    tasks_queue = app.extensions.setdefault("offload.tasks", TaskQueue(get_settings(app)))
    webhook_dispatch.init_app(app, get_store(app), tasks_queue)
    # A finished child's last count-down wakes its parent (offload/fanin.py).
    fanin.init_store(get_store(app), tasks_queue)
    app.register_blueprint(webhooks.bp)
    readiness.init_app(app, {"store": Probe("store", store_check(get_store(app)))})

    return app
