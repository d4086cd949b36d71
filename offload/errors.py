"""The project's exceptions, under one base.

Jobs raise :class:`PermanentError` (never retried) or :class:`TransientError` (retried by
Cloud Tasks); any other exception from a job counts as transient. The worker raises
:class:`DeadlineExceededError` and :class:`CancelledError` inside a running job.
"""

from __future__ import annotations

__all__ = [
    "CancelledError",
    "ChildFailedError",
    "CloudTasksUnavailableError",
    "ConfigError",
    "DeadlineExceededError",
    "EnqueueError",
    "EnvelopeError",
    "JobError",
    "LeaseLostError",
    "OffloadError",
    "PermanentError",
    "SliceSpentError",
    "StepError",
    "StoreError",
    "TransientError",
    "WaitingError",
]


class OffloadError(Exception):
    """Base of every error this project raises."""


class ConfigError(OffloadError):
    """The configuration is invalid or inconsistent; the process refuses to start."""


class StoreError(OffloadError):
    """The job store failed."""


class EnqueueError(OffloadError):
    """Cloud Tasks did not accept the task; the submission may be retried later."""


class CloudTasksUnavailableError(EnqueueError):
    """Cloud Tasks did not answer in time, or is known to be down (the circuit is open)."""


class EnvelopeError(OffloadError):
    """A task's body is not an envelope Offload wrote; the push is dropped (never retried)."""


class JobError(OffloadError):
    """Base of the errors a job handler raises to steer retries."""


class PermanentError(JobError):
    """The job cannot succeed, however often it is retried: fail it now."""


class TransientError(JobError):
    """The job failed for a passing reason: let Cloud Tasks retry it."""


class StepError(PermanentError):
    """``ctx.step`` or ``ctx.checkpoint`` misused (a repeated step name, a value JSON
    cannot hold): a mistake in the job's code, which no retry mends."""


class DeadlineExceededError(BaseException):
    """The job's time budget is spent.

    Derived from ``BaseException`` like App Engine's historic ``DeadlineExceededError``,
    so a job's ``except Exception`` does not swallow it by accident.
    """


class CancelledError(BaseException):
    """The job was cancelled while it ran; raised at its next progress or deadline check."""


class SliceSpentError(BaseException):
    """The run's slice of time is spent: raised at a step boundary, a checkpoint or a check.

    Not an error of the job: the worker has its state in the store already, creates the
    continuation task and answers 204; the job goes on in its next run. A ``BaseException``
    so that the job's ``except Exception`` lets it through.
    """


class LeaseLostError(BaseException):
    """Another run took the job over (this run's claim token no longer matches).

    Raised by the store's fenced writes, so that a run that outlived its lease can
    change nothing; the worker stops the run and writes nothing more.
    """


class ChildFailedError(PermanentError):
    """A child job the parent waited for did not succeed (``ctx.wait_for``).

    Raised into the parent (which then fails, naming the child) unless it asked to
    collect failures; then it is the child's entry in the results.
    """

    def __init__(self, message: str, *, job_id: str, status: str, error: object = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.error = error


class WaitingError(BaseException):
    """The run waits for child jobs (``ctx.wait_for``): it ends here, holding no worker.

    Not an error of the job: the worker ends the run waiting and answers 204; the last
    child to finish wakes the job in a new run, where ``wait_for`` returns the results.
    A ``BaseException`` so that the job's ``except Exception`` lets it through.
    """
