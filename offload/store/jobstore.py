"""The job store: every status change is one conditional UPDATE.

The ``WHERE`` clause of each change names the statuses it may leave, so a finished job
never moves back to running, and two workers claiming one job cannot both win: SQLite
runs a single UPDATE atomically, and PostgreSQL re-checks the ``WHERE`` of a row it had
to wait for (READ COMMITTED), so the same statement is safe on both.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.sql import ClauseElement

from offload.errors import StoreError
from offload.outcomes import Reason
from offload.store import deliveries as deliverylog
from offload.store import events
from offload.store.engine import engine_for
from offload.store.fanout import FanoutStore, child_counts
from offload.store.models import (
    CANCELLED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    WAKEUP_ENQUEUING,
    WAKEUP_PENDING,
    Job,
)
from offload.store.retry import retrying, write_behind
from offload.store.schema import SCHEMA_REVISION, VERSION_TABLE, attempts, jobs, steps
from offload.store.statements import (
    CLAIM,
    CLAIM_EXPECTED,
    CLOSE_ATTEMPT,
    CLOSE_JOB,
    INSERT_ATTEMPT,
    INSERT_JOB,
    SELECT_ATTEMPTS,
    SELECT_CANCEL,
    SELECT_JOB,
    SELECT_JOB_BY_KEY,
    SELECT_STEPS,
    SET_PROGRESS,
    job_from_row,
    job_from_values,
    list_statement,
    takeable,
)
from offload.store.wakeups import WakeupStore

__all__ = ["CancelOutcome", "Claim", "JobStore", "NewJob", "utcnow"]

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


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
class Claim:
    """The result of a worker's attempt to take a job: ``job`` is set only if it won."""

    won: bool
    job: Job | None
    token: str | None = None


@dataclass(frozen=True)
class CancelOutcome:
    """What ``cancel`` did: ``cancelled`` (was queued), ``requested`` (running), ``finished``."""

    outcome: str
    job: Job


class JobStore(FanoutStore, WakeupStore):
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

    # -- worker side ------------------------------------------------------------

    def claim(
        self,
        job_id: str,
        *,
        attempt: int,
        lease_seconds: float,
        expect: tuple[str, int] | None = None,
    ) -> Claim:
        """Take a queued job (or one whose previous runner's lease ran out) to run it.

        Exactly one of several concurrent callers wins. An attempt left open by a runner
        that died is closed as ``interrupted``. With ``expect`` (type, the type's
        max_attempts) the claim also needs the job to be of that type with an attempt
        left (or continuing); a lost claim then reads nothing (``job`` is None).
        """
        token = secrets.token_hex(16)
        now = utcnow()
        tried = [False]

        def take() -> Row[Any] | None:
            with self.engine.begin() as conn:
                if tried[0]:
                    # The connection dropped on an earlier try: it may have committed.
                    mine = conn.execute(
                        select(jobs).where(jobs.c.id == job_id, jobs.c.lease_token == token)
                    ).first()
                    if mine is not None:
                        return mine
                tried[0] = True
                params = {
                    "p_id": job_id,
                    "p_now": now,
                    "p_token": token,
                    "p_until": now + dt.timedelta(seconds=lease_seconds),
                }
                if expect is not None:
                    params.update(p_type=expect[0], p_max=expect[1])
                row = conn.execute(CLAIM if expect is None else CLAIM_EXPECTED, params).first()
                if row is not None:
                    run = row._mapping["runs"]
                    if run > 1:  # a first run has no earlier attempt open
                        self._interrupt_open_attempts(conn, job_id, now)
                    conn.execute(
                        INSERT_ATTEMPT,
                        {"job_id": job_id, "number": attempt, "run": run, "started_at": now},
                    )
                    events.claimed(conn, row._mapping, attempt, now)
                return row

        row = retrying(take, what=f"claiming job {job_id}", budget=self.retry_seconds)
        if row is not None:
            # UPDATE ... RETURNING gave the claimed row; its attempt log is not needed to run.
            return Claim(True, job_from_row(row), token)
        return Claim(False, None if expect is not None else self.get(job_id))

    def finish(
        self,
        job_id: str,
        token: str,
        *,
        status: str,
        reason: str | None = None,
        result: Any = None,
        error: dict[str, Any] | None = None,
        outcome: str,
    ) -> bool:
        """End a claimed job (succeeded, failed, cancelled); False if the claim was lost."""
        assert status in FINISHED
        return self._close(
            job_id,
            token,
            outcome,
            attempt_error=error,
            status=status,
            reason=reason,
            result=result,
            error=error,
            finished_at=utcnow(),
            lease_token=None,
            lease_expires_at=None,
        )

    def release(self, job_id: str, token: str, *, outcome: str, error: dict[str, Any]) -> bool:
        """Give a claimed job back to the queue after a failed attempt Cloud Tasks will retry."""
        return self._close(
            job_id,
            token,
            outcome,
            attempt_error=error,
            status=QUEUED,
            reason=outcome,
            error=error,
            lease_token=None,
            lease_expires_at=None,
        )

    def _close(
        self,
        job_id: str,
        token: str,
        outcome: str,
        *,
        attempt_error: dict[str, Any] | None,
        **values: Any,
    ) -> bool:
        now = utcnow()
        tried = [False]
        sql = {k: v for k, v in values.items() if isinstance(v, ClauseElement)}
        plain = {k: v for k, v in values.items() if k not in sql}

        change = [events.Change()]

        def write() -> bool:
            with self.engine.begin() as conn:
                # UPDATE ... RETURNING the job's state: its events need no second read.
                state = conn.execute(
                    # SQL expressions (a durable run's spent_seconds + elapsed) cannot go
                    # as parameters; the plain values do, so the statement stays cached.
                    CLOSE_JOB.values(**sql) if sql else CLOSE_JOB,
                    {"p_id": job_id, "p_token": token, "updated_at": now, **plain},
                ).first()
                changed = int(state is not None)
                if state is not None:
                    conn.execute(
                        CLOSE_ATTEMPT,
                        {
                            "p_id": job_id,
                            "finished_at": now,
                            "outcome": outcome,
                            "error": None
                            if attempt_error is None
                            else attempt_error.get("message"),
                        },
                    )
                    change[0] = events.after_change(
                        conn, job_id, now, attempt_outcome=outcome, state=state._mapping
                    )
                elif tried[0]:
                    # An earlier try may have committed before its connection dropped.
                    row = conn.execute(
                        select(jobs.c.status, jobs.c.updated_at).where(jobs.c.id == job_id)
                    ).first()
                    changed = int(row is not None and row.updated_at == now)
                    # What it recorded is not known here: look for a delivery to send (the
                    # hook finds none if there is none); a parent's wake is the sweep's.
                    change[0] = events.Change(delivery=bool(changed))
                tried[0] = True
            return bool(changed)

        def write_and_tell() -> bool:
            changed = write()
            if changed and values["status"] in FINISHED:
                # A try that committed before its connection dropped lost its wake: the
                # cron route's sweep wakes such a parent (offload/fanin.py).
                self._finished(job_id, change[0])
            return changed

        what = f"recording the {outcome} of job {job_id}"
        try:
            return retrying(write_and_tell, what=what, budget=self.retry_seconds)
        except StoreError:
            # Still unreachable: keep trying in the background so the job is recorded (and
            # its lease released) as soon as the store is back, not when the lease ends.
            write_behind(write_and_tell, what=what, give_up_after=900.0)
            raise

    def fail_unclaimed(self, job_id: str, *, reason: str, error: dict[str, Any]) -> bool:
        """Fail a job without running it (its attempts are used up).

        Allowed from queued, or from running when the runner's lease has run out (it
        died); an attempt it left open is closed as ``interrupted``.
        """
        now = utcnow()
        return retrying(
            lambda: self._fail_unclaimed(job_id, now, reason, error),
            what=f"failing job {job_id}",
            budget=self.retry_seconds,
        )

    def _fail_unclaimed(
        self, job_id: str, now: dt.datetime, reason: str, error: dict[str, Any]
    ) -> bool:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, takeable(now))
                .values(
                    status=FAILED,
                    reason=reason,
                    error=error,
                    finished_at=now,
                    updated_at=now,
                    lease_token=None,
                    lease_expires_at=None,
                )
            ).rowcount
            change = events.Change()
            if changed:
                self._interrupt_open_attempts(conn, job_id, now)
                change = events.after_change(conn, job_id, now)
        if changed:
            self._finished(job_id, change)
        return bool(changed)

    @staticmethod
    def _interrupt_open_attempts(conn: Connection, job_id: str, now: dt.datetime) -> None:
        conn.execute(
            update(attempts)
            .where(attempts.c.job_id == job_id, attempts.c.finished_at.is_(None))
            .values(
                finished_at=now,
                outcome=Reason.INTERRUPTED,
                error="the runner stopped without answering (killed or timed out)",
            )
        )

    def set_progress(self, job_id: str, token: str, fraction: float, message: str | None) -> None:
        """Store a running job's progress."""
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                SET_PROGRESS,
                {
                    "p_id": job_id,
                    "p_token": token,
                    "p_fraction": fraction,
                    "p_message": message,
                    "p_now": now,
                },
            ).rowcount
            if changed:
                data = {"fraction": fraction, "message": message}
                events.append(conn, job_id, events.PROGRESS, data, now)

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

    def reap(self, *, lease_expired_before: dt.datetime) -> int:
        """Fail running jobs whose runner died long ago and that no delivery took back.

        Normally the next delivery of the task closes a dead run; this is for the task
        Cloud Tasks gave up on meanwhile, so that no job claims to run forever.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(jobs.c.id).where(
                        jobs.c.status == RUNNING, jobs.c.lease_expires_at < lease_expired_before
                    )
                ).scalars()
            )
            for job_id in ids:
                self._interrupt_open_attempts(conn, job_id, now)
            if not ids:
                return 0
            reaped = list(
                conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id.in_(ids),
                        jobs.c.status == RUNNING,
                        jobs.c.lease_expires_at < lease_expired_before,
                    )
                    .values(
                        status=FAILED,
                        reason=Reason.INTERRUPTED,
                        error={
                            "type": Reason.INTERRUPTED,
                            "message": "its runner died and Cloud Tasks stopped retrying",
                        },
                        finished_at=now,
                        updated_at=now,
                        lease_token=None,
                        lease_expires_at=None,
                    )
                    .returning(jobs.c.id)
                ).scalars()
            )
            changes = {job_id: events.after_change(conn, job_id, now) for job_id in reaped}
        for job_id in reaped:
            self._finished(job_id, changes[job_id])
        return len(reaped)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a client asked to cancel this job."""
        with self.engine.connect() as conn:
            value = conn.execute(SELECT_CANCEL, {"p_id": job_id}).scalar()
        return bool(value)
