"""Running one delivery of a job and turning its outcome into the retry contract.

| outcome                                   | answer                    | job          |
|-------------------------------------------|---------------------------|--------------|
| success                                   | 204                       | succeeded    |
| PermanentError, invalid payload, unknown  | 204                       | failed       |
| type, last attempt used                   |                           |              |
| cancelled                                 | 204                       | cancelled    |
| transient failure or deadline, attempts   | retry (500 App Engine /   | queued again |
| left                                      | 503 + Retry-After HTTP)   |              |
| another delivery is running it            | retry                     | unchanged    |
| finished already (duplicate delivery)     | 204                       | unchanged    |

Cloud Tasks retries any non-2xx, so every failure that a retry cannot mend answers 204.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from offload.context import JobContext
from offload.deadline import Deadline, enforce, hard_exit
from offload.errors import CancelledError, DeadlineExceededError, PermanentError, TransientError
from offload.registry import JobRegistry
from offload.settings import Settings
from offload.store import CANCELLED, FAILED, SUCCEEDED, Job, JobStore

__all__ = ["Delivery", "Outcome", "run_delivery"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One push from Cloud Tasks, as the worker understood it."""

    job_id: str
    attempt: int  # 1 on the first delivery: the task's retry count + 1


@dataclass(frozen=True)
class Outcome:
    """What to answer Cloud Tasks: ``retry`` False means 204 (the task is done)."""

    retry: bool
    summary: str


def _error(kind: str, exc: BaseException | str) -> dict[str, Any]:
    message = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    return {"type": kind, "message": message[:2000]}


def _jsonable(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    json.dumps(result)  # raises TypeError/ValueError if the job returned something odd
    return result


def run_delivery(
    store: JobStore, settings: Settings, registry: JobRegistry, delivery: Delivery
) -> Outcome:
    """Claim the job, run its handler under its deadline, record and classify the outcome."""
    job = store.get(delivery.job_id, with_attempts=False)
    if job is None:
        log.error(
            "delivery for unknown job %s: answered 204 so it is not retried forever",
            delivery.job_id,
        )
        return Outcome(False, "unknown job")
    if job.finished:
        log.info("job %s already %s: duplicate delivery answered 204", job.id, job.status)
        return Outcome(False, f"already {job.status}")

    job_type = registry.get(job.type)
    if job_type is None:
        store.fail_unclaimed(
            job.id,
            reason="unknown_job_type",
            error=_error("unknown_job_type", f"no handler for {job.type!r}"),
        )
        log.error("job %s has type %r, which this worker does not know", job.id, job.type)
        return Outcome(False, "unknown job type")

    # Attempts are counted as runs (the store's claims), not as deliveries: Cloud Tasks'
    # retry count also counts deliveries that never ran the job (worker unreachable,
    # another delivery holding the job), and those must not use up the job's attempts.
    max_attempts = min(job.max_attempts, job_type.max_attempts)
    if job.attempts >= max_attempts:
        # The last run ended without an answer (its process was killed, say).
        logged = store.get(job.id)
        last = logged.attempt_log[-1].outcome if logged and logged.attempt_log else None
        # A run still open (or closed as interrupted) died without an answer: killed by a
        # hard limit, or its instance went away.
        if last == "deadline_exceeded":
            reason = "deadline_exceeded"
        elif last in (None, "interrupted"):
            reason = "interrupted"
        else:
            reason = "max_attempts_exceeded"
        if store.fail_unclaimed(
            job.id,
            reason=reason,
            error=_error(reason, f"all {max_attempts} attempts ran without an answer"),
        ):
            log.warning("job %s failed: attempts used up (%s)", job.id, reason)
            return Outcome(False, reason)

    budget = min(job.deadline_seconds, job_type.deadline_seconds)
    # Until gunicorn's timeout has surely killed a runner stuck where no signal reaches
    # it, nobody else may take the job; a runner that ends normally releases it at once.
    lease = max(
        budget + settings.dispatch_margin_seconds,
        settings.worker_timeout_seconds + 5.0,
    )
    claim = store.claim(job.id, attempt=delivery.attempt, lease_seconds=lease)
    if not claim.won or claim.token is None or claim.job is None:
        current = claim.job
        if current is None or current.finished:
            return Outcome(False, "finished by another delivery")
        log.info("job %s is being run by another delivery: asking for a later retry", job.id)
        return Outcome(True, "busy")
    job, token = claim.job, claim.token

    try:
        payload = job_type.payload_model.model_validate(job.payload)
    except ValidationError as e:
        log.error("job %s payload no longer validates: failed without retry", job.id)
        return _fail_now(store, job, token, "invalid_payload", e)

    deadline = Deadline(budget)
    ctx = JobContext(
        job_id=job.id,
        job_type=job.type,
        attempt=delivery.attempt,
        run=job.attempts,
        max_attempts=max_attempts,
        request_id=job.request_id,
        deadline=deadline,
        save_progress=lambda f, m: store.set_progress(job.id, token, f, m),
        read_cancel_requested=lambda: store.cancel_requested(job.id),
        progress_interval=settings.progress_interval_seconds,
    )
    log.info(
        "attempt %d started (run %d of %d), budget %gs",
        delivery.attempt,
        job.attempts,
        max_attempts,
        budget,
    )
    started = time.perf_counter()
    try:
        with enforce(
            deadline,
            hard_grace=settings.hard_grace_seconds,
            on_hard_limit=lambda: _hard_stop(store, job, token, ctx),
        ):
            if job.cancel_requested:  # the claimed row says so: no need to ask the store
                raise CancelledError("the job was cancelled")
            result = job_type.handler(ctx, payload)
    except DeadlineExceededError as e:
        log.warning(
            "attempt %d: deadline of %gs exceeded after %.3fs",
            delivery.attempt,
            budget,
            time.perf_counter() - started,
        )
        return _failed(store, job, token, ctx, "deadline_exceeded", e)
    except CancelledError:
        store.finish(
            job.id, token, status=CANCELLED, reason="cancelled_by_client", outcome="cancelled"
        )
        log.info("job %s cancelled while running", job.id)
        return Outcome(False, "cancelled")
    except PermanentError as e:
        log.warning("job %s failed permanently: %s", job.id, e)
        return _fail_now(store, job, token, "permanent_error", e)
    except TransientError as e:
        log.warning("attempt %d failed transiently: %s", delivery.attempt, e)
        return _failed(store, job, token, ctx, "transient_error", e)
    except Exception as e:
        log.error("attempt %d raised", delivery.attempt, exc_info=e)
        return _failed(store, job, token, ctx, "error", e)

    try:
        stored = _jsonable(result)
    except (TypeError, ValueError) as e:
        log.error("job %s returned a result JSON cannot hold: %s", job.id, e)
        return _fail_now(store, job, token, "invalid_result", e)
    store.finish(job.id, token, status=SUCCEEDED, result=stored, outcome="succeeded")
    log.info("job %s succeeded in %.3fs", job.id, time.perf_counter() - started)
    return Outcome(False, "succeeded")


def _hard_stop(store: JobStore, job: Job, token: str, ctx: JobContext) -> None:
    """The job ignored its deadline: record the attempt, then end this process.

    Nothing in the process can be trusted to unwind the job, so it exits; gunicorn's
    arbiter starts a fresh worker and Cloud Tasks, seeing no answer, retries.
    """
    log.critical("attempt %d ignored DeadlineExceededError: ending the worker process", ctx.attempt)
    try:
        error = DeadlineExceededError("the job ignored its deadline; its process was ended")
        _failed(store, job, token, ctx, "deadline_exceeded", error)
    except Exception:
        log.exception("could not record the stopped attempt; the next delivery will")
    finally:
        hard_exit()


def _fail_now(store: JobStore, job: Job, token: str, kind: str, exc: BaseException) -> Outcome:
    """A failure no retry can mend: the job ends ``failed`` with ``kind`` as its reason."""
    store.finish(job.id, token, status=FAILED, reason=kind, error=_error(kind, exc), outcome=kind)
    return Outcome(False, kind)


def _failed(
    store: JobStore, job: Job, token: str, ctx: JobContext, kind: str, exc: BaseException
) -> Outcome:
    """A retryable failure: retry while attempts remain, else fail the job for good."""
    if ctx.is_last_attempt:
        log.warning("job %s failed after its last attempt (%d): %s", job.id, ctx.attempt, kind)
        return _fail_now(store, job, token, kind, exc)
    store.release(job.id, token, outcome=kind, error=_error(kind, exc))
    return Outcome(True, kind)
