"""The Celery peer: the same HTTP front (gunicorn + Flask) with ``.delay()`` in the view.

Runs in the peer's own virtual environment (bench/peers/requirements-celery.txt), never
in Offload's; bench/peers.py starts it as ``gunicorn bench.peers.celery_app:app`` and
``celery -A bench.peers.celery_app worker``. A job is a no-op that counts itself in
Redis, so the benchmark knows when every one of them has run.
"""

import os

import redis
from celery import Celery
from flask import Flask, jsonify, request

BROKER = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/15")
celery = Celery("peer", broker=BROKER, backend=BROKER)
celery.conf.update(
    task_acks_late=True,  # as durable as Celery gets: a killed worker's task is redelivered
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_expires=600,
)
_counter = redis.Redis.from_url(BROKER)


@celery.task(name="peer.noop")
def noop(payload):  # type: ignore[no-untyped-def]
    """The no-op job; it records that it ran."""
    _counter.incr("peer:done")
    return None


app = Flask(__name__)


@app.post("/jobs")
def submit_job():  # type: ignore[no-untyped-def]
    """Validate a little, enqueue, answer 202 as Offload does."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return jsonify({"title": "Bad Request", "status": 400}), 400
    result = noop.delay(body.get("payload") or {})
    return jsonify({"id": result.id, "status": "queued"}), 202


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """Liveness."""
    return jsonify({"status": "ok"})
