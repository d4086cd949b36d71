"""``POST /tasks/webhook``: send one webhook delivery, signed now, and answer by the retry contract.

| what happened                                    | answer | delivery         |
|--------------------------------------------------|--------|------------------|
| the receiver answered 2xx                        | 204    | delivered        |
| non-2xx or unreachable, attempts left            | retry  | enqueued (again) |
| non-2xx or unreachable, last attempt used        | 204    | failed           |
| URL refused (internal address when hosted)       | 204    | failed           |
| delivery or job gone (expired), already finished | 204    | unchanged        |
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, request

from offload.authn import AuthError, caller_of
from offload.envelope import TaskEnvelope
from offload.errors import EnvelopeError
from offload.flaskapp import get_settings, get_store, no_content
from offload.logs import log_context
from offload.problems import problem_response
from offload.store import Job, utcnow
from offload.store.deliveries import DELIVERED, ENQUEUED, FAILED_DELIVERY, PENDING
from offload.webhooks import WebhookUrlError, parse_secret, send, signed_headers
from worker.auth import PushAuthenticator

__all__ = ["bp"]

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)


def _retry(target: str, summary: str) -> Response:
    if target == "http":
        return problem_response(
            503, "Retry Later", summary, slug="retry", headers={"Retry-After": "10"}
        )
    # App Engine targets: 503 would throttle the whole queue; 500 asks for a retry.
    return problem_response(500, "Retry Later", summary, slug="retry")


def _body(event: str, job: Job) -> bytes:
    """The webhook's JSON: the event, when it was sent, and the job resource."""
    return json.dumps(
        {
            "type": event,
            "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
            "data": job.to_resource(),
        },
        separators=(",", ":"),
    ).encode()


@bp.post("/tasks/webhook")
def send_webhook() -> Response:
    """Send the webhook a Cloud Tasks push names; non-2xx makes the queue retry it."""
    authenticator: PushAuthenticator = current_app.extensions["offload.auth"]
    try:
        auth = authenticator.authenticate(caller_of(request))
    except AuthError as e:
        log.warning("webhook push refused (%d): %s", e.status, e.reason)
        return problem_response(e.status, e.title, e.detail, slug=e.slug, headers=e.headers)
    try:
        delivery_id = TaskEnvelope.decode_webhook(request.get_data())
    except EnvelopeError as e:
        # Cloud Tasks retries any non-2xx: a body that can never parse must answer 204.
        log.error("malformed webhook envelope, dropped with 204: %s", e)
        return no_content()
    store = get_store(current_app)
    record = store.deliveries.get(delivery_id)
    if record is None or record.delivery.state not in (PENDING, ENQUEUED):
        return no_content()
    job = store.get(record.job_id)
    if job is None:
        return no_content()
    with log_context(job_id=job.id, job_type=job.type):
        settings = get_settings(current_app)
        secret = settings.webhook_secret.get_secret_value()
        if not secret:
            log.error("webhook %s: OFFLOAD_WEBHOOK_SECRET is not set on the worker", delivery_id)
            return _retry(auth.target, "webhooks are not configured on the worker")
        body = _body(record.delivery.event, job)
        headers = signed_headers(parse_secret(secret), msg_id=record.delivery.id, body=body)
        attempt = record.delivery.attempts + 1
        try:
            result = send(
                record.url,
                body,
                headers,
                allow_internal=not settings.hosted,
                timeout=settings.webhook_timeout_seconds,
            )
        except WebhookUrlError as e:
            store.deliveries.record_attempt(
                delivery_id, utcnow(), state=FAILED_DELIVERY, status=None, error=str(e)
            )
            log.warning("webhook %s refused, not sent: %s", delivery_id, e)
            return no_content()
        if result.ok:
            store.deliveries.record_attempt(
                delivery_id, utcnow(), state=DELIVERED, status=result.status, error=None
            )
            log.info("webhook %s delivered (attempt %d): %s", delivery_id, attempt, result.status)
            return no_content()
        last = attempt >= settings.webhook_max_attempts
        store.deliveries.record_attempt(
            delivery_id,
            utcnow(),
            state=FAILED_DELIVERY if last else ENQUEUED,
            status=result.status,
            error=result.error,
        )
        if last:
            log.warning(
                "webhook %s given up after %d attempts: %s", delivery_id, attempt, result.error
            )
            return no_content()
        log.info("webhook %s attempt %d failed, retrying: %s", delivery_id, attempt, result.error)
        return _retry(auth.target, f"receiver: {result.error}")
