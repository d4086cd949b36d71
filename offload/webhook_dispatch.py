"""Turning a finished job's webhook deliveries into Cloud Tasks.

The finish writes the delivery row in its own transaction (the outbox, see
``offload/store/events.py``); right after that commit the store's on-finish hook,
registered here by both services (web finishes cancelled and enqueue-failed jobs,
the worker everything else), creates one Cloud Task per delivery. A task that could
not be created stays ``pending`` and the worker's cron route creates it later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

from flask import Flask

from offload.enqueue import TaskQueue
from offload.errors import EnqueueError
from offload.flaskapp import get_settings
from offload.logs import log_context
from offload.store import JobStore, utcnow
from offload.webhooks import parse_secret

__all__ = ["enqueue_deliveries", "enqueue_pending", "init_app", "webhook_task_id"]

log = logging.getLogger(__name__)


def webhook_task_id(delivery_id: str) -> str:
    """The Cloud Tasks id of a delivery's task: stable, so a repeat is ALREADY_EXISTS."""
    return hashlib.sha256(delivery_id.encode()).hexdigest()[:8] + "-wh-" + delivery_id


def _enqueue(store: JobStore, tasks: TaskQueue, delivery_id: str, request_id: str) -> bool:
    try:
        tasks.enqueue_webhook(
            task_id=webhook_task_id(delivery_id),
            delivery_id=delivery_id,
            headers={"X-Request-ID": request_id},
        )
    except EnqueueError as e:
        log.warning("webhook %s not enqueued yet (cron retries): %s", delivery_id, e)
        return False
    store.deliveries.mark_enqueued(delivery_id, utcnow())
    return True


def enqueue_deliveries(store: JobStore, tasks: TaskQueue, job_id: str) -> int:
    """Create the tasks of one job's pending deliveries; the count created."""
    pending = store.deliveries.pending_for(job_id)
    if not pending:
        return 0
    job = store.get(job_id, with_attempts=False)
    request_id = job.request_id if job else ""
    with log_context(job_id=job_id):
        done = sum(_enqueue(store, tasks, d, request_id) for d in pending)
        log.info("webhook of job %s enqueued (%d of %d)", job_id, done, len(pending))
    return done


def enqueue_pending(store: JobStore, tasks: TaskQueue, *, older_than_seconds: float = 60) -> int:
    """Create the tasks of deliveries left pending (the hook's enqueue failed)."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
    jobs = store.deliveries.pending_jobs(created_before=cutoff)
    return sum(enqueue_deliveries(store, tasks, job_id) for job_id in jobs)


def init_app(app: Flask, store: JobStore, tasks: TaskQueue) -> None:
    """Check the webhook secret and create delivery tasks whenever a job finishes."""
    secret = get_settings(app).webhook_secret.get_secret_value()
    if secret:
        parse_secret(secret)  # a malformed secret stops the service at start
    store.on_delivery.append(lambda job_id: enqueue_deliveries(store, tasks, job_id))
