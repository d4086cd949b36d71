"""The Cloud Tasks push handler."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, current_app, request

from offload.authn import AuthError, caller_of
from offload.enqueue import TaskQueue
from offload.envelope import TaskEnvelope
from offload.errors import EnvelopeError, StoreError
from offload.flaskapp import get_settings, get_store, no_content
from offload.logs import log_context
from offload.problems import problem_response
from offload.registry import get_registry
from offload.requestctx import current_trace
from worker.auth import PushAuthenticator
from worker.continuation import TaskContinuer
from worker.queues import push_queue
from worker.runner import Delivery, Outcome, run_delivery
from worker.spawning import Spawner

__all__ = ["bp"]

log = logging.getLogger(__name__)
bp = Blueprint("tasks", __name__)

_TASK_NAME = re.compile(r"^[A-Za-z0-9_-]{1,500}$")


def _authenticator() -> PushAuthenticator:
    auth: PushAuthenticator = current_app.extensions["offload.auth"]
    return auth


def get_tasks() -> TaskQueue:
    """The worker's Cloud Tasks client, made on first use (for continuation tasks)."""
    tasks: TaskQueue | None = current_app.extensions.get("offload.tasks")
    if tasks is None:
        tasks = current_app.extensions["offload.tasks"] = TaskQueue(get_settings(current_app))
    return tasks


def _task_header(target: str, name: str) -> str:
    """A Cloud Tasks header of the proven target only (App Engine's or the HTTP one's)."""
    prefix = "X-AppEngine-Task" if target == "appengine" else "X-CloudTasks-Task"
    return request.headers.get(prefix + name, "")


@bp.post("/tasks/run")
def run_task() -> Response:
    """Run the job a Cloud Tasks push names, and answer by the retry contract."""
    try:
        auth = _authenticator().authenticate(caller_of(request))
    except AuthError as e:
        log.warning("push refused (%d): %s", e.status, e.reason)
        return problem_response(e.status, e.title, e.detail, slug=e.slug, headers=e.headers)

    queue = push_queue(request.headers, auth.target)
    if queue not in current_app.extensions["offload.queues"]:
        log.warning("push refused (403): queue %r is not declared", queue[:100])
        return problem_response(
            403, "Forbidden", "this worker only accepts pushes from its declared queues"
        )
    # The retry count counts every failed attempt, so +1 is this delivery's number.
    retries = _task_header(auth.target, "RetryCount")
    attempt = int(retries) + 1 if retries.isdigit() and len(retries) < 10 else 1
    task = _task_header(auth.target, "Name")
    with log_context(task=task if _TASK_NAME.match(task) else None, attempt=attempt):
        try:
            envelope = TaskEnvelope.decode(request.get_data())
        except EnvelopeError as e:
            # Cloud Tasks retries any non-2xx: a body that can never parse must answer 204.
            log.error("malformed task envelope, dropped with 204: %s", e)
            return no_content()
        job_id = envelope.job_id
        with log_context(job_id=job_id, job_type=envelope.job_type):
            try:
                outcome = run_delivery(
                    get_store(current_app),
                    get_settings(current_app),
                    get_registry(current_app),
                    Delivery(job_id, attempt, envelope.job_type),
                    TaskContinuer(
                        get_tasks, current_trace().traceparent(), get_registry(current_app)
                    ),
                    Spawner(
                        get_store(current_app),
                        get_tasks,
                        get_registry(current_app),
                        current_trace().traceparent(),
                    ),
                )
            except StoreError as e:
                # Retried on fresh connections and still unreachable: Cloud Tasks retries
                # the push; a finished job's result is written behind as soon as it can be.
                log.warning("job store unreachable: %s", e)
                outcome = Outcome(True, "store unreachable")
            if not outcome.retry:
                return no_content()
            log.info("asking Cloud Tasks to retry: %s", outcome.summary)
            if auth.target == "http":
                # HTTP targets: 503 slows the queue and Retry-After is honoured.
                retry_after = str(outcome.retry_after or min(2**attempt, 60))
                return problem_response(
                    503,
                    "Retry Later",
                    outcome.summary,
                    slug="retry",
                    headers={"Retry-After": retry_after},
                )
            # App Engine targets: 503 would throttle the whole queue; 500 asks for a retry.
            return problem_response(500, "Retry Later", outcome.summary, slug="retry")
