"""The job store (SQLite locally, PostgreSQL in production), shared by web and worker."""

from __future__ import annotations

from offload.store.jobstore import CancelOutcome, JobStore, NewJob
from offload.store.models import (
    CANCELLED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    Attempt,
    Job,
    utcnow,
)
from offload.store.runs import Claim

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "SUCCEEDED",
    "Attempt",
    "CancelOutcome",
    "Claim",
    "Job",
    "JobStore",
    "NewJob",
    "utcnow",
]
