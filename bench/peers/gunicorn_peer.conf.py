"""gunicorn settings of the Celery peer's web (stock: sync workers, no Offload logger)."""

worker_class = "sync"
accesslog = None
