"""What the web and worker app factories share: settings, logs, store, job types, errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response

from offload import problems, requestctx
from offload.logs import configure_logging_from
from offload.registry import JobRegistry
from offload.settings import Settings, load_settings
from offload.store import JobStore

__all__ = ["base_app", "get_settings", "get_store", "no_content"]


def base_app(import_name: str, service: str, overrides: Mapping[str, Any] | None) -> Flask:
    """A Flask app with Offload's settings, structured logs, job store and error handling.

    ``overrides`` wins over the environment; keys that are not settings (Flask's own,
    such as ``TESTING``) go to ``app.config`` as they are.
    """
    settings = load_settings(overrides)
    configure_logging_from(service, settings)
    app = Flask(import_name)
    app.config.update(settings.as_config())
    app.config.update({k: v for k, v in (overrides or {}).items() if k not in app.config})
    app.config["OFFLOAD_SERVICE"] = service
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["offload.settings"] = settings
    app.extensions["offload.jobs"] = JobRegistry.from_modules(
        m.strip() for m in settings.job_modules.split(",")
    )

    store = JobStore(
        settings.database_url.get_secret_value(),
        pool_size=settings.database_pool_size,
        retry_seconds=settings.store_retry_seconds,
        application_name=f"offload-{service}",
    )
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


def get_settings(app: Flask) -> Settings:
    """The app's typed settings."""
    settings: Settings = app.extensions["offload.settings"]
    return settings


def get_store(app: Flask) -> JobStore:
    """The app's job store."""
    store: JobStore = app.extensions["offload.store"]
    return store


def no_content() -> Response:
    """``204 No Content``: no body, no ``Content-Length``, no ``Content-Type``.

    A 204 with a Content-Length made App Engine answer 500 and HTTP/2 fronts reset the
    stream (PROTOCOL_ERROR); gunicorn sends none for 204, and nothing here adds one.
    """
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response
