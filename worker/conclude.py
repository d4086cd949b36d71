"""The end of a delivery: the one place that records a verdict, and the one that logs it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from offload.context import JobContext
from offload.errors import EnqueueError
from offload.outcomes import Action, Reason
from offload.registry import JobType
from offload.store import CANCELLED, FAILED, SUCCEEDED, Job, JobStore
from worker.verdicts import Verdict, error_record

__all__ = ["Continuer", "Delivery", "Outcome", "Run", "conclude"]

log = logging.getLogger("worker.runner")


@dataclass(frozen=True)
class Delivery:
    """One push from Cloud Tasks, as the worker understood it."""

    job_id: str
    attempt: int  # 1 on the first delivery: the task's retry count + 1
    job_type: str | None = None  # as the envelope names it: lets the claim come first


@dataclass(frozen=True)
class Outcome:
    """What to answer Cloud Tasks: ``retry`` False means 204 (the task is done)."""

    retry: bool
    summary: str
    retry_after: int | None = None  # seconds, for HTTP targets' Retry-After


@dataclass
class Run:
    """A claimed job being run by this delivery."""

    job: Job
    token: str
    job_type: JobType
    max_attempts: int
    ctx: JobContext | None = None
    spawn: Callable[[str, str, list[Any]], list[str]] | None = None

    @property
    def is_last_attempt(self) -> bool:
        """Whether a retryable failure of this run fails the job for good."""
        return self.job.attempts >= self.max_attempts

    @property
    def budget(self) -> float:
        """The attempt's budget: the job's deadline within its type's."""
        return min(self.job.deadline_seconds, self.job_type.deadline_seconds)


class Continuer(Protocol):
    """Creates the task that wakes the next run of a continued job."""

    def task_name(self, job: Job, run: int) -> str:
        """The full name of the task that wakes run ``run`` of the job (on its queue)."""
        ...

    def enqueue(self, job: Job, run: int, budget_seconds: float) -> None:
        """Create that task (``ALREADY_EXISTS`` counts as done); EnqueueError if not."""
        ...

    def look_again_at_lease_end(self, job: Job) -> bool:
        """A task for when the holding run's lease ends; EnqueueError if not created."""
        ...


def conclude(
    store: JobStore,
    delivery: Delivery,
    run: Run | None,
    verdict: Verdict,
    continuer: Continuer | None,
) -> Outcome:
    """Settle the verdict (a retry with no attempt left fails), record it, log it."""
    if verdict.action is Action.RETRY and run is not None and run.is_last_attempt:
        verdict = Verdict(
            Action.FAIL,
            verdict.reason,
            verdict.error,
            elapsed=verdict.elapsed,
            last_attempt=True,
            detail=verdict.detail,
        )
    outcome = _record(store, delivery, run, verdict, continuer)
    _report(delivery, run, verdict, outcome)
    return outcome


def _busy(verdict: Verdict, continuer: Continuer | None) -> Outcome:
    """Another run holds the job: look again when its lease ends, not at the backoff's pace.

    The queue's backoff grows past a minute while a dead run's lease runs out; a task
    scheduled for the lease's end (one per run) takes the job over at once. Without
    it (Cloud Tasks refused), the push is retried as before.
    """
    holder = verdict.holder
    if continuer is not None and holder is not None:
        try:
            if continuer.look_again_at_lease_end(holder):
                return Outcome(False, f"{Reason.BUSY}: looked at again when run {holder.runs} ends")
        except EnqueueError as e:
            log.warning("no task for the lease's end of job %s: %s", holder.id, e)
    return Outcome(True, Reason.BUSY, retry_after=verdict.retry_after)


def _record(
    store: JobStore,
    delivery: Delivery,
    run: Run | None,
    verdict: Verdict,
    continuer: Continuer | None,
) -> Outcome:
    """Write the verdict to the store (the only place that ends a run) and pick the answer."""
    action, reason = verdict.action, verdict.reason
    if action is Action.DROP:
        return Outcome(False, verdict.detail or reason)
    if action is Action.BUSY:
        return _busy(verdict, continuer)
    if action is Action.FAIL_UNCLAIMED:
        error = verdict.error_record() or error_record(reason, reason)
        if store.fail_unclaimed(delivery.job_id, reason=reason, error=error):
            return Outcome(False, reason)
        return Outcome(True, Reason.BUSY)  # a live run holds it after all: ask again later
    assert run is not None
    job, token = run.job, run.token
    if action is Action.SUCCEED:
        done = store.finish(
            job.id, token, status=SUCCEEDED, result=verdict.result, outcome=Reason.SUCCEEDED
        )
    elif action is Action.FAIL:
        failure = verdict.error_record()
        done = store.finish(
            job.id, token, status=FAILED, reason=reason, error=failure, outcome=reason
        )
    elif action is Action.CANCEL:
        done = store.finish(
            job.id,
            token,
            status=CANCELLED,
            reason=Reason.CANCELLED_BY_CLIENT,
            outcome=Reason.CANCELLED,
        )
    elif action is Action.RETRY:
        error = verdict.error_record() or error_record(reason, reason)
        done = store.release(job.id, token, outcome=reason, error=error)
        return Outcome(True, reason) if done else Outcome(False, Reason.LEASE_LOST)
    elif action is Action.WAIT:
        return _wait(store, run, verdict, continuer)
    else:
        return _continue(store, run, verdict, continuer)
    return Outcome(False, reason if done else Reason.LEASE_LOST)


def _continue(store: JobStore, run: Run, verdict: Verdict, continuer: Continuer | None) -> Outcome:
    """Save the run's end and create the continuation task; a failed create asks a retry.

    The state is committed first: if the process dies before the task exists, Cloud
    Tasks retries this delivery (it got no answer), and that retry continues the job.
    """
    assert continuer is not None, "a worker that continues jobs needs a continuer"
    job, next_run = run.job, run.job.runs + 1
    name = continuer.task_name(job, next_run)
    if not store.continue_run(job.id, run.token, task_name=name, spent_seconds=verdict.elapsed):
        return Outcome(False, Reason.LEASE_LOST)
    left = run.budget - job.spent_seconds - verdict.elapsed
    try:
        continuer.enqueue(job, next_run, max(left, 1.0))
    except EnqueueError as e:
        # The job waits, queued and continuing: this task's retry takes it, using no attempt.
        log.warning("continuation task of run %d not created (%s): asking for a retry", next_run, e)
        return Outcome(True, "continuation not enqueued")
    return Outcome(False, Reason.CONTINUED)


def _wait(store: JobStore, run: Run, verdict: Verdict, continuer: Continuer | None) -> Outcome:
    """End the run waiting for the job's children; wake it now if none is left.

    The wake-up task is named from the job's id and next run, so this wake and the last
    child's (both happen when that child finishes between the two) make one task.
    """
    assert continuer is not None, "a worker that runs parents needs a continuer"
    job, next_run = run.job, run.job.runs + 1
    name = continuer.task_name(job, next_run)
    left = store.wait_children(job.id, run.token, task_name=name, spent_seconds=verdict.elapsed)
    if left is None:
        return Outcome(False, Reason.LEASE_LOST)
    if left == 0:
        budget = run.budget - job.spent_seconds - verdict.elapsed
        try:
            continuer.enqueue(job, next_run, max(budget, 1.0))
        except EnqueueError as e:
            log.warning("wake-up of run %d not created (%s): asking for a retry", next_run, e)
            return Outcome(True, "wake-up not enqueued")
    return Outcome(False, Reason.WAITING)


def _report(delivery: Delivery, run: Run | None, verdict: Verdict, outcome: Outcome) -> None:
    """Log what happened to the delivery (the only place that does)."""
    if run is None:
        _report_unrun(delivery, verdict, outcome)
        return
    attempt, reason, error = delivery.attempt, verdict.reason, verdict.error
    if outcome.summary == Reason.LEASE_LOST:
        log.warning(
            "job %s was taken over by another run: its %s is not recorded", run.job.id, reason
        )
    if reason is Reason.DEADLINE_EXCEEDED:
        if verdict.detail == "hard limit":
            log.critical("attempt %d ignored DeadlineExceededError: ending the process", attempt)
        else:
            seconds = run.ctx.deadline.seconds if run.ctx else run.budget
            log.warning(
                "attempt %d: deadline of %gs exceeded after %.3fs",
                attempt,
                seconds,
                verdict.elapsed,
            )
    elif reason is Reason.TRANSIENT_ERROR:
        log.warning("attempt %d failed transiently: %s", attempt, error)
    elif reason is Reason.ERROR:
        log.error("attempt %d raised", attempt, exc_info=_exc_info(error))
    elif reason is Reason.WAITING:
        log.info(
            "run %d waits for child jobs after %.3fs (%s)",
            run.job.runs,
            verdict.elapsed,
            verdict.detail,
        )
    elif reason is Reason.CONTINUED:
        log.info("run %d continues in a new request after %.3fs", run.job.runs, verdict.elapsed)
    elif reason is Reason.LEASE_LOST:
        log.warning("job %s was taken over by another run: this run stops", run.job.id)
    else:
        message = _RUN_MESSAGES.get(reason, f"job %s ended {reason}: %s")
        level = logging.INFO if reason in (Reason.SUCCEEDED, Reason.CANCELLED) else logging.WARNING
        log.log(level, message, run.job.id, error if error is not None else verdict.elapsed)
    if verdict.last_attempt:
        log.warning("job %s failed after its last attempt (%d): %s", run.job.id, attempt, reason)


_RUN_MESSAGES = {
    Reason.SUCCEEDED: "job %s succeeded in %.3fs",
    Reason.CANCELLED: "job %s cancelled while running (after %.3fs)",
    Reason.PERMANENT_ERROR: "job %s failed permanently: %s",
    Reason.INVALID_PAYLOAD: "job %s payload no longer validates, failed without retry: %s",
    Reason.INVALID_RESULT: "job %s returned a result JSON cannot hold: %s",
}


def _exc_info(error: BaseException | str | None) -> BaseException | None:
    return error if isinstance(error, BaseException) else None


def _report_unrun(delivery: Delivery, verdict: Verdict, outcome: Outcome) -> None:
    """Log a delivery that ran nothing (triage decided, or another run holds the job)."""
    job_id, action, reason = delivery.job_id, verdict.action, verdict.reason
    if action is Action.BUSY and not outcome.retry:
        log.info("job %s is being run by another delivery: %s", job_id, outcome.summary)
    elif action is Action.BUSY:
        log.info("job %s is being run by another delivery: asking for a later retry", job_id)
    elif reason is Reason.UNKNOWN_JOB:
        log.error("delivery for unknown job %s: answered 204, or it is retried forever", job_id)
    elif action is Action.DROP:
        log.info("job %s %s: duplicate delivery answered 204", job_id, verdict.detail)
    elif reason is Reason.UNKNOWN_JOB_TYPE:
        log.error("job %s has type %r, which this worker does not know", job_id, verdict.detail)
    elif not outcome.retry:
        log.warning("job %s failed: attempts used up (%s)", job_id, reason)
