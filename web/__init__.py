"""The public API: submit, inspect, list and cancel jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from offload import fanin, webhook_dispatch
from offload.enqueue import TaskQueue
from offload.flaskapp import base_app, get_settings, get_store
from web import api, batch, children, longpoll, openapi, security, stream

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None, *, tasks_client: Any = None) -> Flask:
    """Build the web service; ``config`` overrides defaults and the environment.

    ``tasks_client`` replaces the Cloud Tasks client (:mod:`offload.testing` has one).
    """
    app = base_app(__name__, "web", config)
    app.extensions["offload.tasks"] = TaskQueue(get_settings(app), client=tasks_client)
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
    return app
