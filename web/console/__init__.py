"""The operator's console: server-rendered pages under ``/console`` served by ``web``.

Jobs list and overview, a job's page with live progress and its log lines, and the
cancel and resubmit actions; signed in with the API's own authentication.
"""

from __future__ import annotations

from flask import Flask

from web.console import access, actions, sessions, views
from web.console.blueprint import bp

__all__ = ["bp", "init_app"]

_ROUTES = (access, actions, views)  # imported for the routes they add to bp


def init_app(app: Flask) -> None:
    """Session cookie, template helpers and the blueprint."""
    sessions.init_app(app)
    app.add_template_filter(views.pretty, "pretty")
    app.add_template_global(access.csrf_token, "csrf_token")
    app.register_blueprint(bp)
