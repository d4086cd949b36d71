"""The worker side of the job store: claims, finishes and the runs that died.

A run starts with :meth:`RunStore.claim` (one conditional UPDATE that exactly one of
several concurrent callers wins) and ends with :meth:`RunStore.finish` or
:meth:`RunStore.release`, fenced by the claim's token; a run whose runner died is closed
by the next claim, by :meth:`RunStore.fail_unclaimed`, or by the cron's
:meth:`RunStore.reap`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, update
from sqlalchemy.sql import ClauseElement

from offload.errors import StoreError
from offload.outcomes import Reason
from offload.store import events
from offload.store.models import FAILED, FINISHED, QUEUED, RUNNING, Job, utcnow
from offload.store.retry import retrying, write_behind
from offload.store.schema import attempts, jobs
from offload.store.statements import (
    CLAIM,
    CLAIM_EXPECTED,
    CLOSE_ATTEMPT,
    CLOSE_JOB,
    INSERT_ATTEMPT,
    SELECT_CANCEL,
    SET_PROGRESS,
    job_from_row,
    takeable,
)

__all__ = ["Claim", "RunStore"]


@dataclass(frozen=True)
class Claim:
    """The result of a worker's attempt to take a job: ``job`` is set only if it won."""

    won: bool
    job: Job | None
    token: str | None = None


class RunStore:
    """Claims, finishes, progress and dead runs of jobs (mixed into :class:`JobStore`)."""

    engine: Engine
    # How long the worker's calls retry on a fresh connection (JobStore's).
    retry_seconds: float

    def get(self, job_id: str, *, with_attempts: bool = True) -> Job | None:
        """One job, or None (JobStore's)."""
        raise NotImplementedError

    def _finished(self, job_id: str, change: events.Change) -> None:
        raise NotImplementedError

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
