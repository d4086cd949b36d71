"""Routes of the public API on jobs that exist: read, list, cancel, resubmit.

They attach to the API's blueprint (``web.api.bp``), so their endpoints stay ``api.*``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, jsonify, request, url_for
from pydantic import ValidationError

from offload.errors import EnqueueError
from offload.flaskapp import get_settings, get_store, no_content
from offload.ids import is_job_id
from offload.logs import log_context
from offload.problems import ProblemError, validation_errors
from offload.registry import get_registry
from offload.store import CANCELLED, FAILED, Job
from web.api import bp, get_tasks, job_response, record, wake_job
from web.longpoll import long_poll, wait_seconds
from web.schemas import ListQuery
from web.security import current_principal

__all__ = ["cancel_children", "cancel_job", "get_job", "list_jobs", "resubmit_job", "visible_job"]

log = logging.getLogger(__name__)


def visible_job(job_id: str) -> Job:
    """The job, if the caller may see it; else 404 (existence is not revealed)."""
    job = get_store(current_app).get(job_id) if is_job_id(job_id) else None
    principal = current_principal()
    if job is None or not (principal.admin or job.owner == principal.name):
        raise ProblemError.not_found(f"job {job_id}")
    return job


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """The status monitor of one job; with ``?wait=N``, once it finished or after N s."""
    wait = wait_seconds()
    job = visible_job(job_id)
    return job_response(long_poll(job, wait) if wait else job, 200)


@bp.get("/jobs")
def list_jobs() -> Response:
    """A page of the caller's jobs (every job for admins), newest first, filtered."""
    try:
        query = ListQuery.model_validate_strings(request.args.to_dict())
    except ValidationError as e:
        raise ProblemError.validation(validation_errors(e, ["query"]), "invalid query") from None
    limit = min(query.limit, get_settings(current_app).page_size_max)
    principal = current_principal()
    jobs = get_store(current_app).list(
        status=query.status,
        type=query.type,
        owner=None if principal.admin else principal.name,
        before=query.cursor,
        limit=limit + 1,
    )
    page, more = jobs[:limit], len(jobs) > limit
    next_cursor = page[-1].id if more else None
    return jsonify(
        {
            # List items leave out the attempt log (it is not read for a page).
            "jobs": [_list_item(j) for j in page],
            "next_cursor": next_cursor,
            "next": (
                url_for(
                    "api.list_jobs",
                    status=query.status,
                    type=query.type,
                    limit=limit,
                    cursor=next_cursor,
                )
                if next_cursor
                else None
            ),
        }
    )


def _list_item(job: Job) -> dict[str, Any]:
    item = job.to_resource()
    del item["attempt_log"], item["steps"]  # not read for a page: GET /jobs/{id} has them
    return item


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel a job: 204 when it was still queued, 202 when it is running and asked to stop."""
    outcome = get_store(current_app).cancel(visible_job(job_id).id)
    if outcome is None:  # deleted by expiry meanwhile
        raise ProblemError.not_found(f"job {job_id}")
    job = outcome.job
    with log_context(job_id=job.id, job_type=job.type):
        if outcome.outcome != "finished":
            cancel_children(job.id)
        if outcome.outcome == "finished":
            raise ProblemError(
                409, "Conflict", f"job {job.id} already ended {job.status}", slug="job-finished"
            )
        if outcome.outcome == "requested":
            log.info("cancel requested for running job %s", job.id)
            return job_response(job, 202)
        if job.task_name and get_tasks().breaker.is_open():
            # Not worth a wait on a dead Cloud Tasks: a late delivery is answered 204 unrun.
            log.warning("job %s cancelled; Cloud Tasks unreachable, its task is left", job.id)
        elif job.task_name:
            try:
                deleted = get_tasks().delete(job.task_name)
            except EnqueueError as e:
                # The job is cancelled in the store; a late delivery is answered 204 unrun.
                log.warning("job %s cancelled but its task was not deleted: %s", job.id, e)
            else:
                log.info("job %s cancelled, task deleted: %s", job.id, deleted)
    return no_content()


def cancel_children(job_id: str) -> None:
    """Cancel a cancelled job's unfinished descendants and delete their tasks (in batches)."""
    names = get_store(current_app).cancel_children(job_id)
    if not names:
        return
    try:
        deleted = get_tasks().delete_many(names)
    except EnqueueError as e:
        # The children are cancelled in the store; late deliveries are answered 204 unrun.
        log.warning("children of %s cancelled, their tasks not deleted: %s", job_id, e)
    else:
        log.info("%d children of %s cancelled, %d tasks deleted", len(names), job_id, deleted)


@bp.post("/jobs/<job_id>/resubmit")
def resubmit_job(job_id: str) -> Response:
    """Submit a failed or cancelled job again, as a new job with the same type and payload."""
    old = visible_job(job_id)
    if old.status not in (FAILED, CANCELLED):
        raise ProblemError(
            409,
            "Conflict",
            f"job {old.id} is {old.status}; only failed or cancelled jobs are resubmitted",
            slug="not-resubmittable",
        )
    job_type = get_registry(current_app).get(old.type)
    if job_type is None:
        raise ProblemError(
            409, "Conflict", f"job type {old.type!r} no longer exists", slug="unknown-job-type"
        )
    # Labelled with the old job, so `offload logs OLD_ID` finds this request too.
    log.info("resubmitting job %s", old.id, extra={"labels": {"job_id": old.id}})
    job, _ = record(
        job_type,
        old.payload,
        deadline_seconds=min(old.deadline_seconds, job_type.deadline_seconds),
        resubmit_of=old.id,
        notify_url=old.notify_url,
    )
    return job_response(wake_job(job), 202)
