"""``POST /jobs/batch``: up to 100 submissions in one request, one answer entry each.

Each item is shaped as a ``POST /jobs`` body, plus its own ``idempotency_key`` (one
header cannot name 100 submissions). An item that is invalid gets its own problem
entry and sinks no other. The jobs without a key are inserted in one transaction and
every new job's task is created with BatchCreateTasks, 100 per call.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from offload.envelope import TaskEnvelope, TaskSpec
from offload.errors import StoreError
from offload.flaskapp import get_settings, get_store
from offload.problems import ProblemError, validation_errors
from offload.requestctx import current_request_id, current_trace
from offload.store import Job, NewJob
from offload.store.models import WAKEUP_PENDING
from web.api import (
    IDEMPOTENCY_KEY,
    get_tasks,
    json_body,
    new_job,
    request_hash_of,
    store_unavailable_as_503,
    validate_submission,
)
from web.notify import notify_url

__all__ = ["MAX_BATCH", "bp"]

log = logging.getLogger(__name__)
bp = Blueprint("batch", __name__)

MAX_BATCH = 100  # BatchCreateTasks' limit: one call per batch


class SubmitBatch(BaseModel):
    """Body of ``POST /jobs/batch``: each item as for ``POST /jobs``, plus ``idempotency_key``."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


def _prepare(index: int, item: dict[str, Any]) -> NewJob:
    """The record of one item, or its ProblemError (locations under body.jobs.N)."""
    body = dict(item)
    key = body.pop("idempotency_key", None)
    if key is not None and not (isinstance(key, str) and IDEMPOTENCY_KEY.match(key)):
        raise ProblemError.validation(
            [
                {
                    "loc": ["body", "jobs", index, "idempotency_key"],
                    "msg": "use 1 to 255 visible ASCII characters",
                    "type": "bad_idempotency_key",
                }
            ],
            "bad idempotency_key",
        )
    try:
        submit, job_type, payload = validate_submission(body)
    except ProblemError as e:
        if e.errors is not None:
            e.errors = [
                {**err, "loc": ["body", "jobs", index, *err["loc"][1:]]} for err in e.errors
            ]
        raise
    return new_job(
        job_type,
        payload,
        deadline_seconds=submit.deadline_seconds or job_type.deadline_seconds,
        delay_seconds=submit.delay_seconds,
        idempotency_key=key,
        request_hash=request_hash_of(body) if key else None,
        notify_url=notify_url(submit.notify),
    )


def _entry(status: int, job: Job | None = None, problem: ProblemError | None = None) -> Any:
    if problem is not None:
        return {
            "status": problem.status,
            "problem": {**problem.body(), "request_id": current_request_id()},
        }
    assert job is not None
    return {"status": status, "job": job.to_resource()}


@bp.post("/jobs/batch")
def submit_batch() -> Response:
    """Validate, record and enqueue up to 100 jobs; one entry per item, in order."""
    try:
        batch = SubmitBatch.model_validate(json_body())
    except ValidationError as e:
        raise ProblemError.validation(validation_errors(e, ["body"]), "invalid batch") from None
    entries: list[Any] = [None] * len(batch.jobs)
    prepared: list[tuple[int, NewJob]] = []
    for i, item in enumerate(batch.jobs):
        try:
            prepared.append((i, _prepare(i, item)))
        except ProblemError as e:
            entries[i] = _entry(e.status, problem=e)
    with store_unavailable_as_503():
        stored = get_store(current_app).insert_many([n for _, n in prepared])
    created: list[tuple[int, Job]] = []
    for (i, new), (job, is_new) in zip(prepared, stored, strict=True):
        if is_new:
            created.append((i, job))
        elif job.request_hash != new.request_hash:
            entries[i] = _entry(422, problem=_key_reused(i, job))
        else:
            entries[i] = _entry(200, job)
    _enqueue(created, entries)
    response = jsonify({"jobs": entries})
    response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = get_settings(current_app).poll_after_seconds
    return response


def _key_reused(index: int, job: Job) -> ProblemError:
    return ProblemError.validation(
        [
            {
                "loc": ["body", "jobs", index, "idempotency_key"],
                "msg": "this key was used with a different submission",
                "type": "idempotency_key_reused",
            }
        ],
        f"idempotency_key already names job {job.id} with another body",
    )


def _enqueue(created: list[tuple[int, Job]], entries: list[Any]) -> None:
    """Create the new jobs' tasks (BatchCreateTasks); a failed one leaves its job pending.

    As for ``POST /jobs``: the job is recorded either way, so its entry is 202, with
    ``wakeup: pending`` when its task was not created (the reconciler creates it).
    """
    headers = {"traceparent": current_trace().traceparent()}
    due = [(i, job) for i, job in created if job.wakeup != WAKEUP_PENDING]
    for i, job in created:
        entries[i] = _entry(202, job)
    specs = [
        TaskSpec(
            name=job.task_name or "",
            envelope=TaskEnvelope.make(job_id=job.id, job_type=job.type, request_id=job.request_id),
            headers={"X-Request-ID": job.request_id, **headers},
            budget_seconds=job.deadline_seconds,
            schedule_time=job.scheduled_at,
        )
        for _, job in due
    ]
    errors = get_tasks().enqueue_many(specs) if specs else []
    store = get_store(current_app)
    for (i, job), error in zip(due, errors, strict=True):
        if error is None:
            continue
        log.warning("job %s accepted, wake-up pending: %s", job.id, error)
        try:
            store.mark_wakeup_pending(job.id)
        except (StoreError, SQLAlchemyError) as store_error:
            # Still enqueuing in the store: the reconciler looks for it after its grace.
            log.warning("could not mark job %s pending: %s", job.id, store_error)
        entries[i] = _entry(202, replace(job, wakeup=WAKEUP_PENDING))
    failed = sum(e is not None for e in errors)
    log.info("batch: %d jobs accepted, %d of them pending", len(created), failed)
