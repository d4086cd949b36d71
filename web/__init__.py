"""The public API: submit, inspect, list and cancel jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from offload import fanin, readiness, webhook_dispatch
from offload.enqueue import TaskQueue
from offload.flaskapp import base_app, get_settings, get_store
from offload.readiness import Probe, store_check, tasks_check
from web import (
    api,
    batch,
    children,
    console,
    jobs,  # noqa: F401 - its routes join api.bp before it is registered
    longpoll,
    openapi,
    security,
    stream,
)

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None, *, tasks_client: Any = None) -> Flask:
    """Build the web service; ``config`` overrides defaults and the environment.

    ``tasks_client`` replaces the Cloud Tasks client (:mod:`offload.testing` has one).
    """
    app = base_app(__name__, "web", config)
    tasks = app.extensions["offload.tasks"] = TaskQueue(get_settings(app), client=tasks_client)
    readiness.init_app(
        app,
        {
            "store": Probe("store", store_check(get_store(app))),
            "cloud_tasks": Probe("cloud_tasks", tasks_check(tasks.client, tasks.queue_path)),
        },
    )
    security.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(batch.bp)
    app.register_blueprint(children.bp)
    app.register_blueprint(openapi.bp)
    longpoll.init_app(app)
    app.register_blueprint(stream.bp)
    webhook_dispatch.init_app(app, get_store(app), app.extensions["offload.tasks"])
    # Cancelling a queued child may be its parent's last count-down: web wakes it then.
    fanin.init_store(get_store(app), app.extensions["offload.tasks"])
    console.init_app(app)
    return app
