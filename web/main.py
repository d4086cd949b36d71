"""gunicorn entry point: ``gunicorn web.main:app``."""

from offload.startup import build
from web import create_app

app = build("web", create_app)
