"""Running one delivery of a job and turning its outcome into the retry contract.

| outcome                                   | answer                    | job          |
|-------------------------------------------|---------------------------|--------------|
| success                                   | 204                       | succeeded    |
| PermanentError, invalid payload, unknown  | 204                       | failed       |
| type, last attempt used                   |                           |              |
| cancelled                                 | 204                       | cancelled    |
| slice spent at a boundary (continuation)  | 204, continuation task    | queued       |
| transient failure or deadline, attempts   | retry (500 App Engine /   | queued again |
| left                                      | 503 + Retry-After HTTP)   |              |
| another delivery is running it            | retry                     | unchanged    |
| finished already (duplicate delivery)     | 204                       | unchanged    |

Cloud Tasks retries any non-2xx, so every failure that a retry cannot mend answers 204.

A delivery goes through three stages: :func:`_take` (triage and claim), :func:`_execute`
(run the handler and classify how it ended, as a :class:`~worker.verdicts.Verdict`),
then :func:`worker.conclude.conclude` (the one place that records the verdict, and the
one place that logs it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from offload.context import JobContext, Journal
from offload.deadline import Deadline, enforce, hard_exit
from offload.errors import (
    CancelledError,
    DeadlineExceededError,
    LeaseLostError,
    SliceSpentError,
    WaitingError,
)
from offload.logs import log_context
from offload.outcomes import Action, Reason
from offload.registry import JobRegistry
from offload.settings import Settings
from offload.slices import RunLimit, lease_seconds, run_limit
from offload.store import JobStore, utcnow
from worker.conclude import Continuer, Delivery, Outcome, Run, conclude
from worker.spawning import Spawner
from worker.verdicts import Verdict, classify_error, classify_result

__all__ = ["Continuer", "Delivery", "Outcome", "run_delivery"]

log = logging.getLogger(__name__)


def run_delivery(
    store: JobStore,
    settings: Settings,
    registry: JobRegistry,
    delivery: Delivery,
    continuer: Continuer | None = None,
    spawner: Spawner | None = None,
) -> Outcome:
    """Claim the job, run its handler under its deadline, record and classify the outcome."""
    taken = _take(store, settings, registry, delivery)
    if isinstance(taken, Verdict):
        return conclude(store, delivery, None, taken, continuer)
    with log_context(run=taken.job.runs):
        if spawner is not None:
            taken.spawn = spawner.bind(taken.job, taken.token)
        verdict = _execute(store, settings, delivery, taken, continuer)
        return conclude(store, delivery, taken, verdict, continuer)


def _take(
    store: JobStore, settings: Settings, registry: JobRegistry, delivery: Delivery
) -> Verdict | Run:
    """Decide whether the delivery runs the job, and claim it if so."""
    lease = lease_seconds(settings)
    named = registry.get(delivery.job_type) if delivery.job_type else None
    if named is not None:
        # The usual case in one statement: a claim that also checks the type the envelope
        # names and the attempts left. Anything else (finished, busy, attempts used up,
        # another type) fails it, and the reads below decide with the job in hand.
        claim = store.claim(
            delivery.job_id,
            attempt=delivery.attempt,
            lease_seconds=lease,
            expect=(named.name, named.max_attempts),
        )
        if claim.won and claim.token is not None and claim.job is not None:
            max_attempts = min(claim.job.max_attempts, named.max_attempts)
            return Run(claim.job, claim.token, named, max_attempts)
    job = store.get(delivery.job_id, with_attempts=False)
    if job is None:
        return Verdict(Action.DROP, Reason.UNKNOWN_JOB, detail="unknown job")
    if job.finished:
        return Verdict(Action.DROP, Reason.DUPLICATE, detail=f"already {job.status}")
    job_type = registry.get(job.type)
    if job_type is None:
        return Verdict(
            Action.FAIL_UNCLAIMED,
            Reason.UNKNOWN_JOB_TYPE,
            f"no handler for {job.type!r}",
            detail=job.type,
        )
    # Attempts are counted as runs that used one (the store's claims, continuations
    # excepted), not as deliveries: Cloud Tasks' retry count also counts deliveries
    # that never ran the job (worker unreachable, another delivery holding the job).
    max_attempts = min(job.max_attempts, job_type.max_attempts)
    if job.attempts >= max_attempts and not job.continuing:
        reason = _why_attempts_ran_out(store, job.id)
        return Verdict(
            Action.FAIL_UNCLAIMED,
            reason,
            f"all {max_attempts} attempts ran without an answer",
        )
    claim = store.claim(job.id, attempt=delivery.attempt, lease_seconds=lease)
    if not claim.won or claim.token is None or claim.job is None:
        current = claim.job
        if current is None or current.finished:
            return Verdict(Action.DROP, Reason.DUPLICATE, detail="finished by another delivery")
        left = 0.0
        if current.lease_expires_at is not None:
            left = (current.lease_expires_at - utcnow()).total_seconds()
        return Verdict(Action.BUSY, Reason.BUSY, retry_after=max(1, round(left)), holder=current)
    return Run(claim.job, claim.token, job_type, max_attempts)


def _why_attempts_ran_out(store: JobStore, job_id: str) -> Reason:
    """The last run ended without an answer (its process was killed, say): how?"""
    logged = store.get(job_id)
    last = logged.attempt_log[-1].outcome if logged and logged.attempt_log else None
    # A run still open (or closed as interrupted) died without an answer: killed by a
    # hard limit, or its instance went away.
    if last == Reason.DEADLINE_EXCEEDED:
        return Reason.DEADLINE_EXCEEDED
    if last in (None, Reason.INTERRUPTED):
        return Reason.INTERRUPTED
    return Reason.MAX_ATTEMPTS_EXCEEDED


def _execute(
    store: JobStore,
    settings: Settings,
    delivery: Delivery,
    run: Run,
    continuer: Continuer | None,
) -> Verdict:
    """Run the claimed job's handler and classify how it ended; writes only its progress."""
    job, job_type = run.job, run.job_type
    try:
        payload = job_type.payload_model.model_validate(job.payload)
    except ValidationError as e:
        return Verdict(Action.FAIL, Reason.INVALID_PAYLOAD, e)

    budget = run.budget
    limit = run_limit(budget - job.spent_seconds, settings)
    ctx = _context(store, settings, delivery, run, limit)
    run.ctx = ctx
    log.info(
        "attempt %d started (run %d of %d), budget %gs: job run %d, %s %gs",
        delivery.attempt,
        job.attempts,
        run.max_attempts,
        budget,
        job.runs,
        "slice" if limit.by_slice else "budget left",
        limit.seconds,
    )
    started = time.perf_counter()

    def hard_stop() -> None:
        """The job ignored its deadline: record the attempt, then end this process.

        Nothing in the process can be trusted to unwind the job, so it exits; gunicorn's
        arbiter starts a fresh worker and Cloud Tasks, seeing no answer, retries.
        """
        error = "the job ignored its deadline; its process was ended"
        verdict = Verdict(Action.RETRY, Reason.DEADLINE_EXCEEDED, error, detail="hard limit")
        try:
            conclude(store, delivery, run, verdict, continuer)
        except Exception:
            log.exception("could not record the stopped attempt; the next delivery will")
        finally:
            hard_exit()

    try:
        with enforce(ctx.deadline, hard_grace=settings.hard_grace_seconds, on_hard_limit=hard_stop):
            if job.cancel_requested:  # the claimed row says so: no need to ask the store
                raise CancelledError("the job was cancelled")
            result = job_type.handler(ctx, payload)
    except BaseException as e:
        if not isinstance(e, Exception) and not _ours(e):
            raise  # SystemExit (gunicorn's abort), KeyboardInterrupt: not a job outcome
        return classify_error(e, time.perf_counter() - started)
    return classify_result(result, time.perf_counter() - started)


_OURS = (DeadlineExceededError, CancelledError, SliceSpentError, LeaseLostError, WaitingError)


def _ours(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the BaseExceptions the worker raises into jobs."""
    return isinstance(exc, _OURS)


def _context(
    store: JobStore, settings: Settings, delivery: Delivery, run: Run, limit: RunLimit
) -> JobContext:
    """What the handler of the claimed job sees during this run."""
    job, token = run.job, run.token
    deadline = Deadline(limit.seconds)
    ctx = JobContext(
        job_id=job.id,
        job_type=job.type,
        attempt=delivery.attempt,
        run=job.attempts,
        max_attempts=run.max_attempts,
        request_id=job.request_id,
        deadline=deadline,
        save_progress=lambda f, m: store.set_progress(job.id, token, f, m),
        read_cancel_requested=lambda: store.cancel_requested(job.id),
        progress_interval=settings.progress_interval_seconds,
        logger=logging.getLogger(f"offload.job.{job.type}"),
        run_number=job.runs,
        journal=_journal(store, job.id, token, job.runs),
        slice_deadline=deadline if limit.by_slice else None,
        read_children=store.child_outcomes,
    )
    if run.spawn is not None:
        ctx.spawn_children = run.spawn
    return ctx


def _journal(store: JobStore, job_id: str, token: str, run_number: int) -> Journal:
    """The run's view of the job's steps and checkpoint, writing through the fenced store."""

    def load() -> tuple[dict[str, Any], Any]:
        state = store.run_state(job_id)
        return state.results, state.checkpoint

    return Journal(
        load=load,
        start_step=lambda name: store.start_step(
            job_id, token, name=name, run=run_number, now=utcnow()
        ),
        finish_step=lambda name, result: store.finish_step(
            job_id, token, name=name, result=result, now=utcnow()
        ),
        fail_step=lambda name, error: store.fail_step(
            job_id, token, name=name, error=error, now=utcnow()
        ),
        save_checkpoint=lambda value: store.save_checkpoint(
            job_id, token, value=value, now=utcnow()
        ),
    )
