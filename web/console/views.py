"""The console's pages: the jobs list with its overview, a job, a job's log lines."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Response, current_app, flash, g, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response as BaseResponse

from offload.enqueue import TaskQueue
from offload.flaskapp import get_settings, get_store
from offload.ids import is_job_id
from offload.logsearch import LogSearchError, request_entries
from offload.problems import ProblemError
from offload.queuestate import queue_state
from offload.registry import get_registry
from offload.requestctx import is_valid_request_id
from offload.store import FAILED, FINISHED, STATUSES, utcnow
from offload.store.overview import by_request_id, finished_per_minute, status_counts
from web.auth import Principal
from web.console.blueprint import bp
from web.console.chart import minute_chart
from web.jobs import get_job
from web.schemas import ListQuery

__all__ = ["job_resource", "pretty"]

PAGE_SIZE = 25
LOG_LINES_SHOWN = 2000


def pretty(value: Any) -> str:
    """A JSON value as indented text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _principal() -> Principal:
    principal: Principal = g.principal
    return principal


def job_resource(job_id: str) -> dict[str, Any]:
    """The job as ``GET /jobs/{id}`` shows it to this principal (404 if it may not see it)."""
    resource: dict[str, Any] = get_job(job_id).get_json()
    return resource


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _rows(value: Any) -> list[Any] | None:
    """Steps or runs as table rows, whatever shape the resource gives them (or None)."""
    if not value:
        return None
    if isinstance(value, dict):
        return [
            {"name": k, **v} if isinstance(v, dict) else {"name": k, "value": v}
            for k, v in value.items()
        ]
    return list(value) if isinstance(value, list) else None  # a count is shown as a fact


def _columns(rows: list[Any]) -> list[str]:
    """Every key of the rows that are mappings, in first-seen order."""
    return list(dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row))


def _list_query() -> tuple[ListQuery, str | None]:
    args = {k: v for k in ("status", "type", "cursor") if (v := request.args.get(k, "").strip())}
    try:
        return ListQuery.model_validate(args), None
    except ValidationError as e:
        bad = ", ".join(str(err["loc"][0]) for err in e.errors())
        return ListQuery(), f"Ignored an invalid filter: {bad}."


@bp.get("/")
@bp.get("")  # registered first: the one url_for builds
def list_jobs() -> BaseResponse | tuple[str, int]:
    """The jobs list, newest first, with the last hour's overview and every queue's state."""
    principal = _principal()
    owner = None if principal.admin else principal.name
    store = get_store(current_app)
    search = request.args.get("q", "").strip()
    query, problem = _list_query()
    if problem:
        flash(problem, "error")
    searched = False
    if search:
        if is_job_id(search):
            job = store.get(search, with_attempts=False)
            if job is not None and (owner is None or job.owner == owner):
                return redirect(url_for("console.job_page", job_id=search))
        if not is_valid_request_id(search):
            flash("Search takes a job id or a request id.", "error")
            search = ""
        searched = bool(search)
    if searched:
        jobs, next_cursor = by_request_id(store, search, owner=owner, limit=100), None
    else:
        page = store.list(
            status=query.status,
            type=query.type,
            owner=owner,
            before=query.cursor,
            limit=PAGE_SIZE + 1,
        )
        jobs = page[:PAGE_SIZE]
        next_cursor = jobs[-1].id if len(page) > PAGE_SIZE else None
    now = utcnow()
    hour_ago = now - dt.timedelta(hours=1)
    tasks: TaskQueue = current_app.extensions["offload.tasks"]
    return render_template(
        "console/jobs.html",
        jobs=jobs,
        query=query,
        search=search if searched else "",
        next_cursor=next_cursor,
        statuses=STATUSES,
        types=get_registry(current_app).names(),
        counts=status_counts(store, since=hour_ago, owner=owner),
        chart=minute_chart(finished_per_minute(store, since=hour_ago, owner=owner), now),
        queues=[
            queue_state(tasks, q)
            for q in sorted(get_registry(current_app).queues(get_settings(current_app).queue))
        ],
        bulk=query.status == FAILED and principal.may("submit") and not searched,
    ), 200


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    """One job: what it is, where it stands (live), its attempts, steps and runs."""
    job = job_resource(job_id)
    attempts = [
        {**a, "duration": _duration(a.get("started_at"), a.get("finished_at"))}
        for a in job.get("attempt_log") or []
    ]
    return render_template(
        "console/job.html",
        job=job,
        attempts=attempts,
        finished=job["status"] in FINISHED,
        tables=[
            (title, _columns(rows), rows)
            for title, rows in (
                ("Steps", _rows(job.get("steps"))),
                ("Runs", _rows(job.get("runs"))),
            )
            if rows
        ],
        may_act=_principal().may("submit"),
        events=_has_events(),
    )


@bp.get("/jobs/<job_id>.json")
def job_json(job_id: str) -> Response:
    """The job resource for the page's live view (the API's answer, session-authenticated)."""
    return get_job(job_id)


# The API's event stream (SSE), when this build has it: the live view then listens
# instead of polling. Looked up, not imported, so the console works with or without it.
_EVENTS_ENDPOINT = "stream.stream_job_events"


def _has_events() -> bool:
    return _EVENTS_ENDPOINT in current_app.view_functions


@bp.get("/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    """The API's event stream of the job, session-authenticated (404 without the stream)."""
    if not _has_events():
        raise ProblemError.not_found(f"an event stream of job {job_id}")
    response = current_app.view_functions[_EVENTS_ENDPOINT](job_id=job_id)
    assert isinstance(response, Response)
    return response


@bp.get("/jobs/<job_id>/logs")
def job_logs(job_id: str) -> tuple[str, int]:
    """The log lines of every request that touched the job: submit, deliveries, cancel."""
    job = job_resource(job_id)
    settings = get_settings(current_app)
    log_dir, project = settings.log_dir, ""
    if not log_dir and settings.hosted:
        project = settings.project_id
    since = dt.datetime.fromisoformat(job["created_at"]) - dt.timedelta(minutes=1)
    entries: list[dict[str, Any]] = []
    error = None
    if not log_dir and not project:
        error = "No log files here: OFFLOAD_LOG_DIR is empty (stdout only)."
    else:
        try:
            entries = request_entries(job_id, log_dir=log_dir, project=project, since=since)
        except LogSearchError as e:
            error = str(e)
    status = 200 if error is None else 503
    return render_template(
        "console/logs.html",
        job=job,
        entries=entries[:LOG_LINES_SHOWN],
        more=max(0, len(entries) - LOG_LINES_SHOWN),
        source=f"Cloud Logging of {project}" if project else f"the files in {log_dir}",
        error=error,
    ), status
