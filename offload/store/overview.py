"""Read-only questions the console asks the store: by request id, counts, finishes per minute."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, func, select

from offload.ids import base32
from offload.store.jobstore import JobStore
from offload.store.models import FINISHED, Job
from offload.store.schema import jobs
from offload.store.statements import job_from_row

__all__ = ["by_request_id", "finished_per_minute", "status_counts"]

SELECT_BY_REQUEST_ID = (
    select(jobs)
    .where(jobs.c.request_id == bindparam("p_request_id"))
    .order_by(jobs.c.id.desc())
    .limit(bindparam("p_limit"))
)


def _id_floor(since: dt.datetime) -> str:
    """The smallest job id created at ``since`` (ids begin with their millisecond)."""
    return base32(int(since.timestamp() * 1000), 10) + "0" * 16


def by_request_id(
    store: JobStore, request_id: str, *, owner: str | None = None, limit: int = 100
) -> list[Job]:
    """Jobs submitted by one request (a resubmission of several shares it), newest first."""
    statement: Any = SELECT_BY_REQUEST_ID
    params: dict[str, Any] = {"p_request_id": request_id, "p_limit": limit}
    if owner is not None:
        statement = statement.where(jobs.c.owner == bindparam("p_owner"))
        params["p_owner"] = owner
    with store.engine.connect() as conn:
        return [job_from_row(row) for row in conn.execute(statement, params)]


def status_counts(
    store: JobStore, *, since: dt.datetime, owner: str | None = None
) -> dict[str, int]:
    """How many jobs submitted since ``since`` are in each status now."""
    # The time bound is on the id (the primary key), so no index on created_at is needed.
    statement = (
        select(jobs.c.status, func.count())
        .where(jobs.c.id >= _id_floor(since))
        .group_by(jobs.c.status)
    )
    if owner is not None:
        statement = statement.where(jobs.c.owner == owner)
    with store.engine.connect() as conn:
        return {str(status): int(count) for status, count in conn.execute(statement)}


def finished_per_minute(
    store: JobStore, *, since: dt.datetime, owner: str | None = None
) -> dict[tuple[str, str], int]:
    """Jobs that finished since ``since``, per ``(YYYY-MM-DDTHH:MM, status)`` minute in UTC."""
    if store.dialect == "sqlite":
        # Stored as naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff": the minute is a prefix.
        minute: Any = func.substr(jobs.c.finished_at, 1, 16)
    else:
        minute = func.to_char(func.timezone("UTC", jobs.c.finished_at), "YYYY-MM-DD HH24:MI")
    statement = (
        select(minute.label("minute"), jobs.c.status, func.count())
        .where(jobs.c.finished_at >= since, jobs.c.status.in_(sorted(FINISHED)))
        .group_by(minute, jobs.c.status)
    )
    if owner is not None:
        statement = statement.where(jobs.c.owner == owner)
    with store.engine.connect() as conn:
        return {
            (str(m).replace(" ", "T"), str(status)): int(count)
            for m, status, count in conn.execute(statement)
        }
