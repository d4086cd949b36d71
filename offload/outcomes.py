"""How a run of a job ends: one enumeration of reasons, shared by worker, store and API.

A ``Reason`` is both an attempt-log outcome (how one run ended) and, for the runs that
end or requeue a job, the job's ``reason``. They are ``StrEnum`` members, so they are
stored and shown as their plain string values.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Action", "Reason"]


class Reason(StrEnum):
    """Why a run ended (attempt log) or why a job is where it is (job resource)."""

    SUCCEEDED = "succeeded"
    # The run's slice was spent at a step boundary: state saved, a continuation task made.
    CONTINUED = "continued"
    # The run ended in ctx.wait_for: the job waits, queued, until its last child finishes.
    WAITING = "waiting_children"
    CANCELLED = "cancelled"
    CANCELLED_BY_CLIENT = "cancelled_by_client"
    PERMANENT_ERROR = "permanent_error"
    TRANSIENT_ERROR = "transient_error"
    ERROR = "error"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INVALID_PAYLOAD = "invalid_payload"
    INVALID_RESULT = "invalid_result"
    UNKNOWN_JOB_TYPE = "unknown_job_type"
    # The run stopped without an answer: killed, timed out, its instance gone.
    INTERRUPTED = "interrupted"
    MAX_ATTEMPTS_EXCEEDED = "max_attempts_exceeded"
    ENQUEUE_FAILED = "enqueue_failed"
    # Another run took the job over (this run's lease was lost): nothing is written.
    LEASE_LOST = "lease_lost"
    # Deliveries that run nothing: another run holds the job, it is finished already
    # (a duplicate delivery), or the store has no such job.
    BUSY = "busy"
    DUPLICATE = "duplicate"
    UNKNOWN_JOB = "unknown_job"


class Action(StrEnum):
    """What the worker does about a delivery once its outcome is classified."""

    SUCCEED = "succeed"  # finish the job succeeded: 204
    FAIL = "fail"  # finish the job failed: 204
    CANCEL = "cancel"  # finish the job cancelled: 204
    RETRY = "retry"  # give the job back to the queue: ask Cloud Tasks for a retry
    CONTINUE = "continue"  # save state, create the continuation task: 204
    WAIT = "wait"  # end the run waiting for its children (the last one wakes it): 204
    FAIL_UNCLAIMED = "fail_unclaimed"  # fail a job without running it: 204
    BUSY = "busy"  # another run holds the job: ask for a later retry, write nothing
    DROP = "drop"  # nothing to do (unknown, finished, lease lost): 204, write nothing
