"""gunicorn entry point: ``gunicorn worker.main:app``."""

from offload.startup import build
from worker import create_app

app = build("worker", create_app)
