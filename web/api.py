"""The public API's blueprint and its submission path: ``POST /jobs`` records and wakes a job.

The routes on jobs that exist (read, list, cancel, resubmit) join the same blueprint
from web/jobs.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from offload.enqueue import TaskQueue
from offload.errors import EnqueueError, StoreError
from offload.flaskapp import get_settings, get_store
from offload.ids import new_job_id, task_id_for
from offload.jsondepth import MAX_JSON_DEPTH, too_deep
from offload.logs import log_context
from offload.outbox import enqueue_job
from offload.problems import ProblemError, validation_errors
from offload.registry import JobType, get_registry
from offload.requestctx import current_request_id, current_trace
from offload.store import Job, NewJob, utcnow
from offload.store.models import WAKEUP_ENQUEUING, WAKEUP_PENDING
from web.notify import notify_url
from web.schemas import SubmitJob
from web.security import current_principal

__all__ = ["bp"]

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def get_tasks() -> TaskQueue:
    """The service's Cloud Tasks queues."""
    queue: TaskQueue = current_app.extensions["offload.tasks"]
    return queue


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); PostgreSQL's json type refuses them too.
    raise ValueError(f"{name} is not a JSON value")


def _too_deep(where: str) -> ProblemError:
    return ProblemError(
        400,
        "Nested Too Deeply",
        f"objects and arrays nest more than {MAX_JSON_DEPTH} levels deep in {where}",
        slug="too-deep",
    )


def _number(text: str) -> float | int:
    # JSON (and JSON Schema's "integer") does not tell 75.0 from 75: an integral number
    # is an int, so strict validation takes it for an integer field as for a float one.
    value = float(text)
    if not math.isfinite(value):  # 1e400: not a number any store can hold
        raise ValueError(f"{text[:20]} is out of range")
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 415/400 problem."""
    mimetype = request.mimetype
    if not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "send the job as JSON with Content-Type: application/json",
            slug="unsupported-media-type",
        )
    try:
        body = json.loads(
            request.get_data(cache=True) or b"null",
            parse_constant=_no_constant,
            parse_float=_number,
        )
    except (ValueError, UnicodeDecodeError) as e:
        raise ProblemError(
            400, "Malformed JSON", f"the body is not valid JSON: {e}", slug="malformed-json"
        ) from None
    except RecursionError:
        raise _too_deep("the body") from None
    if (where := too_deep(body)) is not None:
        raise _too_deep("body." + ".".join(map(str, where)))
    if not isinstance(body, dict):
        raise ProblemError(
            400, "Malformed JSON", "the body must be a JSON object", slug="malformed-json"
        )
    return body


def request_hash_of(body: dict[str, Any]) -> str:
    """The hash an Idempotency-Key is bound to: the submission's canonical JSON."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def job_response(job: Job, status: int) -> Response:
    """The job resource as an answer, with its ``Location`` (and ``Retry-After`` until it ends)."""
    response = jsonify(job.to_resource())
    response.status_code = status
    response.headers["Location"] = url_for("api.get_job", job_id=job.id)
    response.headers["Cache-Control"] = "no-store"
    if not job.finished:
        response.headers["Retry-After"] = get_settings(current_app).poll_after_seconds
    return response


def validate_submission(body: dict[str, Any]) -> tuple[SubmitJob, JobType, dict[str, Any]]:
    try:
        submit = SubmitJob.model_validate(body)
    except ValidationError as e:
        raise ProblemError.validation(validation_errors(e, ["body"]), "invalid job") from None
    job_type = get_registry(current_app).get(submit.type)
    if job_type is None:
        raise ProblemError.validation(
            [
                {
                    "loc": ["body", "type"],
                    "msg": f"unknown job type {submit.type!r}",
                    "type": "unknown_job_type",
                }
            ],
            f"no job type is called {submit.type!r}; the job types are: "
            + ", ".join(sorted(get_registry(current_app).names())),
        )
    try:
        # Strict, in JSON mode: numbers must be numbers, while a date or an enum may
        # still arrive as the string JSON has for it.
        payload = job_type.payload_model.model_validate_json(
            json.dumps(submit.payload), strict=True
        )
    except ValidationError as e:
        raise ProblemError.validation(
            validation_errors(e, ["body", "payload"]), f"invalid payload for {submit.type}"
        ) from None
    if submit.deadline_seconds is not None and submit.deadline_seconds > job_type.deadline_seconds:
        raise ProblemError.validation(
            [
                {
                    "loc": ["body", "deadline_seconds"],
                    "msg": f"may tighten the job type's budget of {job_type.deadline_seconds:g}s, "
                    "never loosen it",
                    "type": "less_than_equal",
                }
            ],
            "deadline_seconds is longer than the job type allows",
        )
    return submit, job_type, payload.model_dump(mode="json")


@bp.post("/jobs")
def submit_job() -> Response:
    """Validate, record and enqueue a job; answer 202 with its status monitor."""
    body = json_body()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise ProblemError(
            400,
            "Bad Idempotency-Key",
            "use 1 to 255 visible ASCII characters",
            slug="bad-idempotency-key",
        )
    submit, job_type, payload = validate_submission(body)
    request_hash = request_hash_of(body)
    job, created = record(
        job_type,
        payload,
        deadline_seconds=submit.deadline_seconds or job_type.deadline_seconds,
        delay_seconds=submit.delay_seconds,
        idempotency_key=key,
        request_hash=request_hash if key else None,
        notify_url=notify_url(submit.notify),
    )
    if not created:
        if job.request_hash != request_hash:
            raise ProblemError.validation(
                [
                    {
                        "loc": ["header", "Idempotency-Key"],
                        "msg": "this key was used with a different request body",
                        "type": "idempotency_key_reused",
                    }
                ],
                f"Idempotency-Key already names job {job.id} with another body",
            )
        log.info("idempotent repeat of job %s", job.id, extra={"labels": {"job_id": job.id}})
        return job_response(job, 200)
    return job_response(wake_job(job), 202)


def record(
    job_type: JobType,
    payload: dict[str, Any],
    *,
    deadline_seconds: float,
    delay_seconds: float | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    resubmit_of: str | None = None,
    notify_url: str | None = None,
) -> tuple[Job, bool]:
    """Store a new queued job for the caller (or find its idempotent twin)."""
    new = new_job(
        job_type,
        payload,
        deadline_seconds=deadline_seconds,
        delay_seconds=delay_seconds,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        resubmit_of=resubmit_of,
        notify_url=notify_url,
    )
    with store_unavailable_as_503():
        return get_store(current_app).insert(new)


@contextmanager
def store_unavailable_as_503() -> Iterator[None]:
    """The one case a submission is refused for an outage: nothing could be recorded."""
    try:
        yield
    except (StoreError, SQLAlchemyError) as e:
        log.warning("job store cannot record a job: %s", type(e).__name__)
        raise ProblemError(
            503,
            "Service Unavailable",
            "the job store cannot record the job right now; nothing was recorded, try again",
            slug="store-unavailable",
            headers={"Retry-After": "5"},
        ) from e


def new_job(
    job_type: JobType,
    payload: dict[str, Any],
    *,
    deadline_seconds: float,
    delay_seconds: float | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    resubmit_of: str | None = None,
    notify_url: str | None = None,
) -> NewJob:
    """The record of a new queued job for the caller; a 413 problem if its payload is big."""
    if len(json.dumps(payload)) > get_settings(current_app).max_payload_bytes:
        raise ProblemError(
            413,
            "Payload Too Large",
            f"the payload is over {get_settings(current_app).max_payload_bytes} bytes of JSON; "
            "store large inputs elsewhere and pass a reference",
            slug="payload-too-large",
        )
    job_id = new_job_id()
    scheduled_at = utcnow() + dt.timedelta(seconds=delay_seconds) if delay_seconds else None
    # Cloud Tasks known down: record the wake-up as pending and answer without waiting.
    wakeup = WAKEUP_PENDING if get_tasks().breaker.is_open() else WAKEUP_ENQUEUING
    return NewJob(
        id=job_id,
        type=job_type.name,
        payload=payload,
        request_id=current_request_id(),
        trace=current_trace().trace_id,
        max_attempts=job_type.max_attempts,
        deadline_seconds=deadline_seconds,
        task_name=get_tasks().task_name(task_id_for(job_id), job_type.queue),
        scheduled_at=scheduled_at,
        owner=current_principal().name,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        resubmit_of=resubmit_of,
        notify_url=notify_url,
        wakeup=wakeup,
        wakeup_grace_seconds=get_settings(current_app).reconcile_grace_seconds,
    )


def wake_job(job: Job) -> Job:
    """Create the recorded job's Cloud Task; if Cloud Tasks is down, leave it pending.

    The job is in the store with its wake-up either way, so the answer is 202: the
    reconciler creates the task of a pending job once Cloud Tasks is back.
    """
    with log_context(job_id=job.id, job_type=job.type):
        if job.wakeup == WAKEUP_PENDING:
            log.warning("job %s accepted, wake-up pending: Cloud Tasks is unreachable", job.id)
            return job
        try:
            enqueue_job(get_tasks(), job, traceparent=current_trace().traceparent())
        except EnqueueError as e:
            log.warning("job %s accepted, wake-up pending: %s", job.id, e)
            try:
                get_store(current_app).mark_wakeup_pending(job.id)
            except (StoreError, SQLAlchemyError) as store_error:
                # Still enqueuing in the store: the reconciler looks for it after its grace.
                log.warning("could not mark job %s pending: %s", job.id, store_error)
            return replace(job, wakeup=WAKEUP_PENDING)
        log.info("job %s accepted (%s), task %s created", job.id, job.type, job.task_name)
        return job
