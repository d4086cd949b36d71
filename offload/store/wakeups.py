"""The outbox side of the job store: what the reconciler reads and writes.

A job's wake-up (its Cloud Task) is kept on its own row: ``wakeup`` (enqueuing, pending,
enqueued), ``wakeup_number`` (the number in the task's name) and ``wakeup_due_at`` (when
the reconciler should look at it next). See docs/ARCHITECTURE.md, "Outbox and reconciler".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, select, update

from offload.store.models import QUEUED, RUNNING, WAKEUP_ENQUEUED, WAKEUP_PENDING, Job
from offload.store.schema import jobs
from offload.store.statements import job_from_row

__all__ = ["WakeupStore"]


class WakeupStore:
    """Reads and conditional writes of jobs' wake-ups (mixed into ``JobStore``)."""

    engine: Engine

    def due_wakeups(self, *, now: dt.datetime, limit: int) -> list[Job]:
        """Queued jobs whose wake-up is due for a look, the longest-waiting first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs)
                .where(jobs.c.status == QUEUED, jobs.c.wakeup_due_at <= now)
                .order_by(jobs.c.wakeup_due_at)
                .limit(limit)
            ).all()
        return [job_from_row(r) for r in rows]

    def dead_runs(self, *, lease_expired_before: dt.datetime, limit: int) -> list[Job]:
        """Running jobs whose runner's lease ran out before the given time (it died)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs)
                .where(jobs.c.status == RUNNING, jobs.c.lease_expires_at < lease_expired_before)
                .order_by(jobs.c.lease_expires_at)
                .limit(limit)
            ).all()
        return [job_from_row(r) for r in rows]

    def confirm_wakeup(self, job_id: str, *, number: int, next_look: dt.datetime) -> bool:
        """Cloud Tasks holds wake-up ``number``: look again at ``next_look``."""
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == job_id,
                        jobs.c.status.in_((QUEUED, RUNNING)),
                        jobs.c.wakeup_number == number,
                    )
                    .values(wakeup=WAKEUP_ENQUEUED, wakeup_due_at=next_look)
                ).rowcount
            )

    def renew_wakeup(
        self,
        job_id: str,
        *,
        number: int,
        task_name: str,
        now: dt.datetime,
        gone_task: str | None = None,
        lease_expired_before: dt.datetime | None = None,
    ) -> Job | None:
        """Wake-up ``number`` vanished from Cloud Tasks: make ``number + 1``, pending.

        Only if the job is still unfinished and nobody gave it another task meanwhile (a
        renewal, a continuation: ``gone_task`` is the one found missing); a running job
        only while its runner's lease is still expired (``lease_expired_before``).
        """
        if lease_expired_before is None:
            still: Any = jobs.c.status == QUEUED
        else:
            still = (jobs.c.status == RUNNING) & (jobs.c.lease_expires_at < lease_expired_before)
        if gone_task is not None:
            still = still & (jobs.c.task_name == gone_task)
        with self.engine.begin() as conn:
            row = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.wakeup_number == number, still)
                .values(
                    wakeup=WAKEUP_PENDING,
                    wakeup_number=number + 1,
                    task_name=task_name,
                    wakeup_due_at=now,
                )
                .returning(*jobs.columns)
            ).first()
        return None if row is None else job_from_row(row)
