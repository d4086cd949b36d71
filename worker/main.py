"""gunicorn entry point: ``gunicorn worker.main:app``."""

from worker import create_app

app = create_app()
