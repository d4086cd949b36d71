"""gunicorn entry point: ``gunicorn web.main:app``."""

from web import create_app

app = create_app()
