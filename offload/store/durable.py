"""The store side of durable jobs: steps, checkpoints, and writes fenced by the claim token.

Every write a run makes here first moves the job's row with a condition on the run's
claim token (``lease_token``). When another run has taken the job over, the token
differs, nothing is written and :class:`~offload.errors.LeaseLostError` is raised: a run
that outlived its lease can never overwrite the work of the run that replaced it. On
PostgreSQL the fencing ``UPDATE`` also locks the job's row until the transaction ends,
so a concurrent claim waits for it; SQLite runs one writer at a time anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from offload.errors import LeaseLostError
from offload.outcomes import Reason
from offload.store import events
from offload.store.models import QUEUED, RUNNING
from offload.store.schema import jobs, steps
from offload.store.statements import HELD_BY_TOKEN

__all__ = ["STEP_FAILED", "STEP_FINISHED", "STEP_RUNNING", "DurableStore", "RunState"]

STEP_RUNNING = "running"
STEP_FINISHED = "finished"
STEP_FAILED = "failed"

_FENCE = update(jobs).where(HELD_BY_TOKEN).values(updated_at=bindparam("p_now"))
_SELECT_STATE = select(jobs.c.checkpoint).where(jobs.c.id == bindparam("p_id"))
_SELECT_FINISHED = select(steps.c.name, steps.c.result).where(
    steps.c.job_id == bindparam("p_id"), steps.c.status == STEP_FINISHED
)


def _step_event(name: str, status: str, run: int | None) -> dict[str, Any]:
    return {"name": name, "status": status, "run": run}


@dataclass(frozen=True)
class RunState:
    """What a new run of a job starts from: its last checkpoint and finished steps."""

    checkpoint: Any
    results: dict[str, Any]


class DurableStore:
    """Steps and checkpoints of running jobs (mixed into :class:`JobStore`)."""

    engine: Engine

    def _close(
        self,
        job_id: str,
        token: str,
        outcome: str,
        *,
        attempt_error: dict[str, Any] | None,
        **values: Any,
    ) -> bool:
        """End the run holding ``token`` with ``values`` (JobStore's, fenced by the token)."""
        raise NotImplementedError

    def continue_run(
        self, job_id: str, token: str, *, task_name: str, spent_seconds: float
    ) -> bool:
        """End a run whose slice is spent: the job waits, queued, for its continuation task.

        Its next claim uses no attempt (``continuing``) and goes on spending this
        attempt's budget, of which this run used ``spent_seconds``.
        """
        return self._close(
            job_id,
            token,
            Reason.CONTINUED,
            attempt_error=None,
            status=QUEUED,
            reason=Reason.CONTINUED,
            continuing=True,
            task_name=task_name,
            spent_seconds=jobs.c.spent_seconds + spent_seconds,
            lease_token=None,
            lease_expires_at=None,
        )

    def run_state(self, job_id: str) -> RunState:
        """The job's last checkpoint (None if none) and its finished steps' results."""
        with self.engine.connect() as conn:
            checkpoint = conn.execute(_SELECT_STATE, {"p_id": job_id}).scalar()
            rows = conn.execute(_SELECT_FINISHED, {"p_id": job_id}).all()
        return RunState(checkpoint, {r.name: r.result for r in rows})

    @staticmethod
    def _fence(conn: Connection, job_id: str, token: str, now: Any) -> None:
        changed = conn.execute(_FENCE, {"p_id": job_id, "p_token": token, "p_now": now}).rowcount
        if not changed:
            raise LeaseLostError(f"job {job_id} was taken over by another run")

    def start_step(self, job_id: str, token: str, *, name: str, run: int, now: Any) -> None:
        """Record that ``name`` is running in ``run`` (a step left failed or running reruns)."""
        with self.engine.begin() as conn:
            self._fence(conn, job_id, token, now)
            values = {
                "status": STEP_RUNNING,
                "run": run,
                "result": None,
                "error": None,
                "started_at": now,
                "finished_at": None,
            }
            moved = conn.execute(
                update(steps).where(steps.c.job_id == job_id, steps.c.name == name).values(**values)
            ).rowcount
            if not moved:
                conn.execute(insert(steps).values(job_id=job_id, name=name, **values))
            events.append(conn, job_id, events.STEP, _step_event(name, STEP_RUNNING, run), now)

    def finish_step(self, job_id: str, token: str, *, name: str, result: Any, now: Any) -> None:
        """Store a step's JSON result: later runs return it instead of running the step."""
        self._end_step(job_id, token, name, now, status=STEP_FINISHED, result=result)

    def fail_step(self, job_id: str, token: str, *, name: str, error: str, now: Any) -> None:
        """Mark a step that raised (it runs again in the job's next run)."""
        self._end_step(job_id, token, name, now, status=STEP_FAILED, error=error[:2000])

    def _end_step(self, job_id: str, token: str, name: str, now: Any, **values: Any) -> None:
        with self.engine.begin() as conn:
            self._fence(conn, job_id, token, now)
            row = conn.execute(
                update(steps)
                .where(steps.c.job_id == job_id, steps.c.name == name)
                .values(finished_at=now, **values)
                .returning(steps.c.run)
            ).first()
            run = None if row is None else row.run
            events.append(conn, job_id, events.STEP, _step_event(name, values["status"], run), now)

    def save_checkpoint(self, job_id: str, token: str, *, value: Any, now: Any) -> None:
        """Store the job's cursor: its next run starts from it (``ctx.saved``)."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == RUNNING, jobs.c.lease_token == token)
                .values(checkpoint=value, checkpoint_at=now, updated_at=now)
            ).rowcount
            if not changed:
                raise LeaseLostError(f"job {job_id} was taken over by another run")
