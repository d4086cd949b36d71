"""Job events: every change of a job, appended in the transaction that made it.

The event stream, long-poll and webhooks read from here. Ids increase; a client that
has seen event ``n`` asks for the events after ``n`` and gets each one exactly once.
A job's finish also writes its webhook delivery (the outbox row) in the same
transaction, so a finished job with a ``notify`` URL can never lose its webhook.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select

from offload.store.fanin import child_finished
from offload.store.models import CANCELLED, FAILED, FINISHED, SUCCEEDED
from offload.store.schema import deliveries, events, jobs

__all__ = [
    "ATTEMPT",
    "STATE_COLUMNS",
    "Change",
    "FINISHED_EVENT",
    "KINDS",
    "PROGRESS",
    "STATUS",
    "STEP",
    "WEBHOOK_EVENTS",
    "Event",
    "EventLog",
    "after_change",
    "append",
    "claimed",
    "delete_for",
    "delivery_id_for",
]

STATUS = "status"
PROGRESS = "progress"
ATTEMPT = "attempt"
FINISHED_EVENT = "finished"
STEP = "step"  # a ctx.step started, finished or failed (durable jobs)
KINDS = (STATUS, PROGRESS, ATTEMPT, STEP, FINISHED_EVENT)
WEBHOOK_EVENTS = {SUCCEEDED: "job.succeeded", FAILED: "job.failed", CANCELLED: "job.cancelled"}


@dataclass(frozen=True)
class Event:
    """One change of one job."""

    id: int
    job_id: str
    kind: str
    data: dict[str, Any]
    created_at: dt.datetime


_INSERT_EVENT = insert(events)
_INSERT_DELIVERY = insert(deliveries)
_AFTER = (
    select(events)
    .where(events.c.job_id == bindparam("p_job"), events.c.id > bindparam("p_after"))
    .order_by(events.c.id)
    .limit(bindparam("p_limit"))
)
_RECENT = (
    select(events.c.id, events.c.job_id)
    .where(events.c.id > bindparam("p_after"))
    .order_by(events.c.id)
    .limit(bindparam("p_limit"))
)
_LAST_ID = select(func.max(events.c.id))


def delivery_id_for(job_id: str) -> str:
    """The webhook-id of a job's finish delivery: stable, so retries carry the same one."""
    return f"msg_{job_id}"


def append(
    conn: Connection, job_id: str, kind: str, data: Mapping[str, Any], now: dt.datetime
) -> None:
    """Append one event to a job's log (inside the caller's transaction)."""
    conn.execute(
        _INSERT_EVENT, {"job_id": job_id, "kind": kind, "data": dict(data), "created_at": now}
    )


def append_many(
    conn: Connection, job_ids: list[str], kind: str, data: Mapping[str, Any], now: dt.datetime
) -> None:
    """Append the same event to many jobs' logs in one statement (batch inserts)."""
    conn.execute(
        _INSERT_EVENT,
        [{"job_id": j, "kind": kind, "data": dict(data), "created_at": now} for j in job_ids],
    )


def _row(job_id: str, kind: str, data: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    return {"job_id": job_id, "kind": kind, "data": dict(data), "created_at": now}


def claimed(conn: Connection, row: Mapping[Any, Any], delivery: int, now: dt.datetime) -> None:
    """The events of a claim: a new attempt (run) started, the job is running."""
    job_id = row["id"]
    data = {"number": row["attempts"], "delivery": delivery, "run": row["runs"]}
    conn.execute(  # one statement for both (executemany)
        _INSERT_EVENT,
        [
            _row(job_id, ATTEMPT, data, now),
            _row(job_id, STATUS, {"status": row["status"], "attempts": row["attempts"]}, now),
        ],
    )


@dataclass(frozen=True)
class Change:
    """What a change written by :func:`after_change` leaves to do once it commits."""

    wake: str | None = None  # the parent whose last open child this finish was
    delivery: bool = False  # a webhook delivery was recorded: its task is to be created


# What after_change reads of the job, given by the caller's UPDATE ... RETURNING or read.
STATE_COLUMNS = (
    jobs.c.status,
    jobs.c.reason,
    jobs.c.attempts,
    jobs.c.cancel_requested,
    jobs.c.notify_url,
    jobs.c.parent_id,
)
_JOB_STATE = select(*STATE_COLUMNS).where(jobs.c.id == bindparam("p_id"))


def after_change(
    conn: Connection,
    job_id: str,
    now: dt.datetime,
    *,
    attempt_outcome: str | None = None,
    state: Mapping[Any, Any] | None = None,
) -> Change:
    """The events of a status change just written, from the job's row (``state``, else read).

    A finish also records the webhook delivery when the job has a notify URL, and
    counts down its parent's open children: :attr:`Change.wake` names the parent when
    this finish is the one that must wake it (see offload/store/fanin.py).
    """
    row = state if state is not None else conn.execute(_JOB_STATE, {"p_id": job_id}).one()._mapping
    rows = []
    if attempt_outcome is not None:
        data = {"number": row["attempts"], "outcome": attempt_outcome}
        rows.append(_row(job_id, ATTEMPT, data, now))
    if row["status"] not in FINISHED:
        data = {
            "status": row["status"],
            "reason": row["reason"],
            "attempts": row["attempts"],
            "cancel_requested": bool(row["cancel_requested"]),
        }
        conn.execute(_INSERT_EVENT, [*rows, _row(job_id, STATUS, data, now)])
        return Change()
    data = {"status": row["status"], "reason": row["reason"]}
    conn.execute(_INSERT_EVENT, [*rows, _row(job_id, FINISHED_EVENT, data, now)])
    if row["notify_url"]:
        conn.execute(
            _INSERT_DELIVERY,
            {
                "id": delivery_id_for(job_id),
                "job_id": job_id,
                "event": WEBHOOK_EVENTS[row["status"]],
                "url": row["notify_url"],
                "state": "pending",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
    wake = child_finished(conn, row["parent_id"], now) if row["parent_id"] else None
    return Change(wake, delivery=bool(row["notify_url"]))


def delete_for(conn: Connection, job_ids: list[str]) -> None:
    """Delete the events and deliveries of jobs about to be deleted (expiry)."""
    conn.execute(delete(events).where(events.c.job_id.in_(job_ids)))
    conn.execute(delete(deliveries).where(deliveries.c.job_id.in_(job_ids)))


class EventLog:
    """Reading the events table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def after(self, job_id: str, after_id: int, *, limit: int = 100) -> list[Event]:
        """A job's events with ids above ``after_id``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                _AFTER, {"p_job": job_id, "p_after": after_id, "p_limit": limit}
            ).all()
        return [Event(r.id, r.job_id, r.kind, dict(r.data or {}), r.created_at) for r in rows]

    def recent(self, after_id: int, *, limit: int = 1000) -> list[tuple[int, str]]:
        """(id, job id) of every job's events above ``after_id``: what the hub watches."""
        with self.engine.connect() as conn:
            rows = conn.execute(_RECENT, {"p_after": after_id, "p_limit": limit}).all()
        return [(int(r.id), str(r.job_id)) for r in rows]

    def last_id(self) -> int:
        """The highest event id so far (0 when there are none)."""
        with self.engine.connect() as conn:
            value = conn.execute(_LAST_ID).scalar()
        return int(value or 0)
