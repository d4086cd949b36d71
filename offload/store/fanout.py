"""The store side of fan-out: children inserted with their parent's count, waits, cancels.

A parent's spawn inserts its children and raises its ``children_open`` by as many in
one transaction fenced by the parent's claim token (offload/store/durable.py), so the
count is right before any child's task exists. Each child's finish counts it down
(offload/store/fanin.py); :meth:`FanoutStore.wait_children` ends a parent's run waiting.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, insert, select, true, update

from offload.outcomes import Reason
from offload.store import events
from offload.store.durable import DurableStore
from offload.store.models import FINISHED, QUEUED, RUNNING, Job
from offload.store.schema import jobs
from offload.store.statements import job_from_row, job_from_values

if TYPE_CHECKING:
    from offload.store.jobstore import NewJob

__all__ = ["ChildOutcome", "FanoutStore", "child_counts"]

log = logging.getLogger(__name__)

_CHUNK = 500  # ids per IN (...): well inside both engines' parameter limits
_COUNTS = (
    select(jobs.c.status, func.count())
    .where(jobs.c.parent_id == bindparam("p_parent"))
    .group_by(jobs.c.status)
)
_OPEN = select(jobs.c.children_open).where(jobs.c.id == bindparam("p_id"))


@dataclass(frozen=True)
class ChildOutcome:
    """How one child ended (or that it has not): what ``ctx.wait_for`` reads."""

    id: str
    type: str
    status: str
    result: Any
    error: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        """Whether the child reached a final status."""
        return self.status in FINISHED


def child_counts(conn: Connection, parent_id: str) -> dict[str, int]:
    """The job's children counted by status (empty: it has none)."""
    return {status: n for status, n in conn.execute(_COUNTS, {"p_parent": parent_id}).all()}


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


class FanoutStore(DurableStore):
    """Children of jobs (a base of :class:`JobStore`)."""

    def _row_values(self, new: NewJob, now: dt.datetime) -> dict[str, Any]:
        raise NotImplementedError

    def _finished(self, job_id: str, change: events.Change) -> None:
        raise NotImplementedError

    def _woke(self, parent_id: str) -> None:
        """Run the on-wake hooks for a parent whose last child finished."""
        for hook in getattr(self, "on_wake", ()):
            try:
                hook(parent_id)
            except Exception:  # the cron sweep wakes it later
                log.exception("on-wake hook failed for %s", parent_id)

    def spawn_children(self, parent_id: str, token: str, children: Sequence[NewJob]) -> list[Job]:
        """Insert the children not inserted yet, counted on the parent, fenced by its token.

        Answers the children still queued (new, or left by a run that died before their
        tasks were created): those whose tasks the caller creates (a repeat is
        ``ALREADY_EXISTS``).
        """
        now = dt.datetime.now(dt.UTC)
        ids = [c.id for c in children]
        with self.engine.begin() as conn:
            self._fence(conn, parent_id, token, now)
            existing: dict[str, str] = {}
            for chunk in _chunks(ids):
                found = conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(chunk)))
                existing.update({r.id: r.status for r in found})
            rows = [
                {**self._row_values(c, now), "parent_id": parent_id}
                for c in children
                if c.id not in existing
            ]
            if rows:
                conn.execute(insert(jobs), rows)
                events.append_many(
                    conn, [r["id"] for r in rows], events.STATUS, {"status": QUEUED}, now
                )
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == parent_id)
                    .values(children_open=jobs.c.children_open + len(rows))
                )
        fresh = {r["id"]: job_from_values(r) for r in rows}
        queued = [i for i in ids if i in fresh or existing.get(i) == QUEUED]
        return [fresh[i] if i in fresh else self._child(i) for i in queued]

    def _child(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            return job_from_row(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def wait_children(
        self, job_id: str, token: str, *, task_name: str, spent_seconds: float
    ) -> int | None:
        """End the run waiting for its children; their open count after commit (None: lost).

        The job is ``queued``, ``continuing`` (the wake-up's claim uses no attempt) and
        ``waiting``; ``task_name`` is its wake-up task's. The count is read after the
        commit: at 0 the caller wakes the job itself (a child may have finished first).
        """
        closed = self._close(
            job_id,
            token,
            Reason.WAITING,
            attempt_error=None,
            status=QUEUED,
            reason=Reason.WAITING,
            continuing=True,
            waiting=True,
            task_name=task_name,
            # Not the reconciler's: the wake-up is made when the last child finishes
            # (or by the cron sweep), and a waiting job has no task until then.
            wakeup_due_at=None,
            spent_seconds=jobs.c.spent_seconds + spent_seconds,
            lease_token=None,
            lease_expires_at=None,
        )
        if not closed:
            return None
        with self.engine.connect() as conn:
            return int(conn.execute(_OPEN, {"p_id": job_id}).scalar() or 0)

    def children_open(self, job_id: str) -> int:
        """How many of the job's children have not finished."""
        with self.engine.connect() as conn:
            return int(conn.execute(_OPEN, {"p_id": job_id}).scalar() or 0)

    def child_outcomes(self, ids: Sequence[str]) -> dict[str, ChildOutcome]:
        """The status, result and error of each child named (missing: expired)."""
        found: dict[str, ChildOutcome] = {}
        cols = (jobs.c.id, jobs.c.type, jobs.c.status, jobs.c.result, jobs.c.error)
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for r in conn.execute(select(*cols).where(jobs.c.id.in_(chunk))):
                    found[r.id] = ChildOutcome(r.id, r.type, r.status, r.result, r.error)
        return found

    def children(self, parent_id: str, *, after: str | None = None, limit: int = 50) -> list[Job]:
        """A page of the job's children in spawn order (ids), after the id ``after``."""
        query = select(jobs).where(jobs.c.parent_id == parent_id)
        if after is not None:
            query = query.where(jobs.c.id > after)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(jobs.c.id).limit(limit)).all()
        return [job_from_row(r) for r in rows]

    def cancel_children(self, parent_id: str) -> list[str]:
        """Cancel the unfinished descendants of a job; the task names of those cancelled.

        Queued children end ``cancelled`` at once (their tasks are the caller's to
        delete); running ones are asked to stop, as ``DELETE /jobs/{id}`` asks.
        """
        task_names: list[str] = []
        finished: list[tuple[str, events.Change]] = []
        level = [parent_id]
        while level:
            now = dt.datetime.now(dt.UTC)
            with self.engine.begin() as conn:
                below = list(
                    conn.execute(
                        select(jobs.c.id).where(
                            jobs.c.parent_id.in_(level), jobs.c.status.in_((QUEUED, RUNNING))
                        )
                    ).scalars()
                )
                for chunk in _chunks(below):
                    cancelled = conn.execute(
                        update(jobs)
                        .where(jobs.c.id.in_(chunk), jobs.c.status == QUEUED)
                        .values(
                            status="cancelled",
                            reason=Reason.CANCELLED_BY_CLIENT,
                            cancel_requested=True,
                            finished_at=now,
                            updated_at=now,
                        )
                        .returning(jobs.c.id, jobs.c.task_name)
                    ).all()
                    conn.execute(
                        update(jobs)
                        .where(jobs.c.id.in_(chunk), jobs.c.status == RUNNING)
                        .values(cancel_requested=True, updated_at=now)
                    )
                    for child_id, name in cancelled:
                        finished.append((child_id, events.after_change(conn, child_id, now)))
                        if name:
                            task_names.append(name)
            level = below
        for child_id, change in finished:
            self._finished(child_id, change)
        return task_names

    def overdue_parents(self, *, older_than: dt.datetime, limit: int = 100) -> list[Job]:
        """Waiting jobs with no child left whose wake-up is overdue (its create failed)."""
        query = (
            select(jobs)
            .where(
                jobs.c.waiting == true(),  # `= 1` / `= true`: the partial index's own term
                jobs.c.status == QUEUED,
                jobs.c.children_open == 0,
                jobs.c.updated_at < older_than,
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [job_from_row(r) for r in conn.execute(query).all()]
