"""Fan-in: a child's finish counts down its parent's unfinished children, in one transaction.

The count (``children_open``) is raised in the transaction that inserts the children,
before any of their tasks exists, so it cannot reach zero while children are still
being enqueued. Each child's finishing transaction lowers it by one and reads it back
(``UPDATE ... RETURNING``: on PostgreSQL the row stays locked until commit, SQLite has
one writer), so exactly one finish sees it reach zero.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, bindparam, update

from offload.store.models import QUEUED
from offload.store.schema import jobs

__all__ = ["child_finished"]

_COUNT_DOWN = (
    update(jobs)
    .where(jobs.c.id == bindparam("p_parent"), jobs.c.children_open > 0)
    .values(children_open=jobs.c.children_open - 1)
    .returning(jobs.c.children_open, jobs.c.status, jobs.c.waiting)
)


def child_finished(conn: Connection, parent_id: str, now: dt.datetime) -> str | None:
    """Count a finished child; the parent's id when this finish is the one that wakes it.

    A parent wakes when no child is left and it is waiting (its run ended in
    ``ctx.wait_for``). If it is not waiting yet, its own wait reads the count and wakes
    itself: whichever of the two commits last sees both conditions.
    """
    row = conn.execute(_COUNT_DOWN, {"p_parent": parent_id}).first()
    if row is None:
        return None
    left, status, waiting = row
    return parent_id if left == 0 and status == QUEUED and waiting else None
