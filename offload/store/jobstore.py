"""The job store: every status change is one conditional UPDATE.

The ``WHERE`` clause of each change names the statuses it may leave, so a finished job
never moves back to running, and two workers claiming one job cannot both win: SQLite
runs a single UPDATE atomically, and PostgreSQL re-checks the ``WHERE`` of a row it had
to wait for (READ COMMITTED), so the same statement is safe on both.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Row, delete, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from offload.errors import StoreError
from offload.outcomes import Reason
from offload.store import deliveries as deliverylog
from offload.store import events
from offload.store.engine import engine_for
from offload.store.fanout import FanoutStore, child_counts
from offload.store.models import (
    CANCELLED,
    FINISHED,
    QUEUED,
    RUNNING,
    WAKEUP_ENQUEUING,
    WAKEUP_PENDING,
    Job,
    utcnow,
)
from offload.store.retry import retrying
from offload.store.runs import RunStore
from offload.store.schema import SCHEMA_REVISION, VERSION_TABLE, attempts, jobs, steps
from offload.store.statements import (
    INSERT_JOB,
    SELECT_ATTEMPTS,
    SELECT_JOB,
    SELECT_JOB_BY_KEY,
    SELECT_STEPS,
    job_from_row,
    job_from_values,
    list_statement,
)
from offload.store.wakeups import WakeupStore

__all__ = ["CancelOutcome", "JobStore", "NewJob"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewJob:
    """What ``web`` records before it enqueues the task."""

    id: str
    type: str
    payload: dict[str, Any]
    request_id: str
    trace: str | None
    max_attempts: int
    deadline_seconds: float
    task_name: str
    scheduled_at: dt.datetime | None = None
    owner: str = "anonymous"
    idempotency_key: str | None = None
    request_hash: str | None = None
    resubmit_of: str | None = None
    # enqueuing: web creates the task next (the reconciler looks after the grace);
    # pending: it will not (Cloud Tasks is down), the reconciler creates it.
    wakeup: str = WAKEUP_ENQUEUING
    wakeup_grace_seconds: float = 30.0
    notify_url: str | None = None
    parent_id: str | None = None


@dataclass(frozen=True)
class CancelOutcome:
    """What ``cancel`` did: ``cancelled`` (was queued), ``requested`` (running), ``finished``."""

    outcome: str
    job: Job


class JobStore(RunStore, FanoutStore, WakeupStore):
    """Jobs, their attempts, steps and wake-ups in SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        retry_seconds: float = 10.0,
        application_name: str = "offload",
    ) -> None:
        try:
            self.engine = engine_for(url, pool_size, application_name)
        except (SQLAlchemyError, ValueError) as e:
            raise StoreError(f"cannot open job store: {e}") from e
        # How long the worker's calls retry on a fresh connection (docs: STORE_RETRY_SECONDS).
        self.retry_seconds = retry_seconds
        self.events = events.EventLog(self.engine)
        self.deliveries = deliverylog.DeliveryLog(self.engine)
        # Called with a job id after a transaction that finished that job and recorded
        # its webhook delivery commits (the sender creates the delivery's task); see
        # docs/ARCHITECTURE.md. Jobs without a notify URL cost no call.
        self.on_delivery: list[Callable[[str], object]] = []
        # Called with a parent's id when its last child's finish commits (offload/fanin.py
        # creates the task that wakes it).
        self.on_wake: list[Callable[[str], object]] = []
        # Called first by dispose(): readers on threads of their own stop reading.
        self.on_dispose: list[Callable[[], object]] = []

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def create_schema(self) -> None:
        """Bring the schema to the newest revision (tests and tools; services never do)."""
        from offload.store.migrate import upgrade

        upgrade(self.engine.url.render_as_string(hide_password=False))

    def schema_revision(self) -> str | None:
        """The migration revision the database is at (None: no schema yet)."""
        try:
            with self.engine.connect() as conn:
                value = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        except (OperationalError, ProgrammingError):
            return None  # no version table: never migrated
        return None if value is None else str(value)

    def check_schema(self) -> None:
        """Refuse a database whose schema is behind the code (a newer one is fine).

        Revisions are numbered and only ever add, so code may run on a schema newer than
        itself while a deploy rolls out; an older schema lacks what the code needs.
        """
        current = self.schema_revision()
        if current is None or int(current) < int(SCHEMA_REVISION):
            raise StoreError(
                f"the job store's schema is at revision {current or 'none'}, this code needs "
                f"{SCHEMA_REVISION}: run `offload db upgrade` with the same "
                "OFFLOAD_DATABASE_URL (see docs/DEPLOY.md)"
            )

    def dispose(self) -> None:
        """Stop the store's background readers, then close every pooled connection."""
        for hook in self.on_dispose:
            hook()
        self.engine.dispose()

    # -- web side ---------------------------------------------------------------

    def insert(self, new: NewJob) -> tuple[Job, bool]:
        """Record a queued job; with an idempotency key already used, return that job."""
        now = utcnow()
        values = self._row_values(new, now)
        try:
            with self.engine.begin() as conn:
                conn.execute(INSERT_JOB, values)
                events.append(conn, new.id, events.STATUS, {"status": QUEUED}, now)
        except IntegrityError:
            if new.idempotency_key is None:
                raise
            existing = self.get_by_idempotency_key(new.owner, new.idempotency_key)
            if existing is None:  # the holder released the key meanwhile
                return self.insert(new)
            return existing, False
        # The row is exactly what was inserted: no need to read it back.
        return job_from_values(values), True

    def insert_many(self, news: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        """Record many queued jobs: those without an idempotency key in one transaction.

        Jobs with a key are inserted one by one, as :meth:`insert` does (a used key
        answers its job). Answers one ``(job, created)`` per item, in order.
        """
        now = utcnow()
        rows = [self._row_values(n, now) for n in news if n.idempotency_key is None]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(INSERT_JOB, rows)
                events.append_many(
                    conn, [r["id"] for r in rows], events.STATUS, {"status": QUEUED}, now
                )
        made = {r["id"]: job_from_values(r) for r in rows}
        return [(made[n.id], True) if n.id in made else self.insert(n) for n in news]

    def _row_values(self, new: NewJob, now: dt.datetime) -> dict[str, Any]:
        """The offload_jobs row of a new queued job."""
        return {
            "id": new.id,
            "type": new.type,
            "status": QUEUED,
            "payload": new.payload,
            "request_id": new.request_id,
            "trace": new.trace,
            "owner": new.owner,
            "idempotency_key": new.idempotency_key,
            "resubmit_of": new.resubmit_of,
            "request_hash": new.request_hash,
            "attempts": 0,
            "max_attempts": new.max_attempts,
            "deadline_seconds": new.deadline_seconds,
            "cancel_requested": False,
            "task_name": new.task_name,
            "wakeup": new.wakeup,
            "wakeup_number": 0,
            "wakeup_due_at": (
                now
                if new.wakeup == WAKEUP_PENDING
                else now + dt.timedelta(seconds=new.wakeup_grace_seconds)
            ),
            "created_at": now,
            "updated_at": now,
            "scheduled_at": new.scheduled_at,
            "notify_url": new.notify_url,
            "parent_id": new.parent_id,
        }

    def get_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        """The job ``owner`` submitted with this idempotency key, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(SELECT_JOB_BY_KEY, {"p_owner": owner, "p_key": key}).first()
            return None if row is None else self._with_attempts(conn, row)

    def get(self, job_id: str, *, with_attempts: bool = True) -> Job | None:
        """One job (with its attempt log unless told otherwise), or None."""

        def read() -> Job | None:
            with self.engine.connect() as conn:
                row = conn.execute(SELECT_JOB, {"p_id": job_id}).first()
                if row is None:
                    return None
                return self._with_attempts(conn, row) if with_attempts else job_from_row(row)

        return retrying(read, what=f"reading job {job_id}", budget=self.retry_seconds)

    def _with_attempts(self, conn: Connection, row: Row[Any]) -> Job:
        params = {"p_id": row._mapping["id"]}
        rows = conn.execute(SELECT_ATTEMPTS, params).all()
        job = job_from_row(row, rows, conn.execute(SELECT_STEPS, params).all())
        counts = child_counts(conn, job.id)
        if counts:
            job = replace(job, children=counts)
        if job.notify_url:
            job = replace(job, deliveries=deliverylog.for_job(conn, job.id))
        return job

    def _finished(self, job_id: str, change: events.Change) -> None:
        """Run the on-delivery hooks (a webhook recorded) and the on-wake ones (a parent).

        A failing hook is logged, the finish stands.
        """
        if change.delivery:
            for hook in self.on_delivery:
                try:
                    hook(job_id)
                except Exception:
                    log.exception("on-delivery hook failed for job %s", job_id)
        if change.wake is not None:
            self._woke(change.wake)

    def list(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        owner: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """A page of jobs, newest first; ``before`` is the id the previous page ended at."""
        values = {"p_owner": owner, "p_status": status, "p_type": type, "p_before": before}
        statement = list_statement(tuple(v is not None for v in values.values()))
        params = {k: v for k, v in values.items() if v is not None}
        with self.engine.connect() as conn:
            rows = conn.execute(statement, {**params, "p_limit": limit}).all()
        return [job_from_row(row) for row in rows]

    def mark_wakeup_pending(self, job_id: str) -> None:
        """Cloud Tasks did not take the job's wake-up: the reconciler creates it at once.

        Only from ``enqueuing``: a delivery or the reconciler may have moved on already.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.wakeup == WAKEUP_ENQUEUING)
                .values(wakeup=WAKEUP_PENDING, wakeup_due_at=now)
            ).rowcount
            if changed:
                events.after_change(conn, job_id, now)

    def cancel(self, job_id: str) -> CancelOutcome | None:
        """Cancel a queued job, or ask a running one to stop; None for an unknown id."""
        for _ in range(3):  # the job may change status between our two UPDATEs
            now = utcnow()
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.status == QUEUED)
                    .values(
                        status=CANCELLED,
                        reason=Reason.CANCELLED_BY_CLIENT,
                        cancel_requested=True,
                        finished_at=now,
                        updated_at=now,
                    )
                ).rowcount
                if not done:
                    asked = conn.execute(
                        update(jobs)
                        .where(jobs.c.id == job_id, jobs.c.status == RUNNING)
                        .values(cancel_requested=True, updated_at=now)
                    ).rowcount
                change = events.after_change(conn, job_id, now) if done or asked else None
            if done and change is not None:
                self._finished(job_id, change)
            job = self.get(job_id)
            if job is None:
                return None
            if done:
                return CancelOutcome("cancelled", job)
            if asked:
                return CancelOutcome("requested", job)
            if job.status in FINISHED:
                return CancelOutcome("finished", job)
        raise StoreError(f"job {job_id} kept changing status while being cancelled")

    # -- worker side (claims and runs: offload/store/runs.py) ----------------

    def expire(self, *, finished_before: dt.datetime, batch: int = 1000) -> int:
        """Delete finished jobs (and their attempts) that ended before ``finished_before``.

        Deletes in batches so no transaction holds locks for long; returns the count.
        """
        total = 0
        while True:
            with self.engine.begin() as conn:
                ids = list(
                    conn.execute(
                        select(jobs.c.id)
                        .where(
                            jobs.c.finished_at < finished_before,
                            jobs.c.status.in_(tuple(FINISHED)),
                        )
                        .limit(batch)
                    ).scalars()
                )
                if not ids:
                    return total
                conn.execute(delete(attempts).where(attempts.c.job_id.in_(ids)))
                conn.execute(delete(steps).where(steps.c.job_id.in_(ids)))
                events.delete_for(conn, ids)
                # A parent's finished children go with it (they would name no job).
                conn.execute(update(jobs).where(jobs.c.parent_id.in_(ids)).values(parent_id=None))
                total += conn.execute(delete(jobs).where(jobs.c.id.in_(ids))).rowcount
