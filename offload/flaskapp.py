"""What the web and worker app factories share: config, logs, store, ids, errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response

from offload import problems, requestctx
from offload.config import load_config
from offload.logs import configure_logging_from
from offload.registry import load_job_modules
from offload.store import JobStore

__all__ = ["base_app", "get_config", "get_store", "no_content"]


def base_app(import_name: str, service: str, overrides: Mapping[str, Any] | None) -> Flask:
    """A Flask app with Offload's config, structured logs, job store and error handling."""
    config = load_config(overrides)
    configure_logging_from(service, config)
    app = Flask(import_name)
    app.config.update(config)
    app.config["OFFLOAD_SERVICE"] = service
    app.config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    load_job_modules(m.strip() for m in str(config["JOB_MODULES"]).split(","))

    store = JobStore(config["DATABASE_URL"], pool_size=config["DATABASE_POOL_SIZE"])
    store.check_schema()
    app.extensions["offload.store"] = store

    requestctx.init_app(app)
    problems.init_app(app)

    @app.get("/_ah/warmup", endpoint="warmup")
    @app.get("/_ah/start", endpoint="start")
    def warmup() -> Response:
        """App Engine's warm-up (and basic scaling's start) request: all is built already."""
        return no_content()

    return app


def get_store(app: Flask) -> JobStore:
    """The app's job store."""
    store: JobStore = app.extensions["offload.store"]
    return store


def get_config(app: Flask) -> Mapping[str, Any]:
    """The app's configuration."""
    return app.config


def no_content() -> Response:
    """``204 No Content``: no body, no ``Content-Length``, no ``Content-Type``.

    A 204 with a Content-Length made App Engine answer 500 and HTTP/2 fronts reset the
    stream (PROTOCOL_ERROR); gunicorn sends none for 204, and nothing here adds one.
    """
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response
