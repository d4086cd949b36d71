"""Request bodies and query strings of the public API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload.store import STATUSES

__all__ = ["ListQuery", "Notify", "SubmitJob"]

# http(s), a host name or IPv4 address, an optional port, a path and query (no user, no
# #fragment, no spaces): what offload.webhooks.check_url accepts (hosted: https only).
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
NOTIFY_URL_PATTERN = r"^https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:" + _PORT + r")?([/?][!$-~]*)?$"
# Cloud Tasks accepts a schedule_time at most 30 days ahead.
MAX_DELAY_SECONDS = 30 * 24 * 3600


class Notify(BaseModel):
    """Where to POST a signed webhook when the job finishes."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=NOTIFY_URL_PATTERN,
        description="https URL (http and loopback are allowed only when not hosted); "
        "hosted, its host must resolve to public addresses only, else 422.",
    )


class SubmitJob(BaseModel):
    """Body of ``POST /jobs``."""

    # Strict: "10" or true is not a number of seconds (a JSON integer still is a float).
    model_config = ConfigDict(extra="forbid", strict=True)

    type: str = Field(min_length=1, max_length=100, description="A registered job type.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Input of the job.")
    delay_seconds: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_SECONDS, description="Run no earlier than this."
    )
    deadline_seconds: float | None = Field(
        default=None, gt=0, description="A tighter time budget than the job type's own."
    )
    notify: Notify | None = Field(
        default=None, description="A webhook to call when the job finishes."
    )


class ListQuery(BaseModel):
    """Query string of ``GET /jobs`` (validated with ``model_validate_strings``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    status: str | None = Field(default=None, pattern="^(" + "|".join(STATUSES) + ")$")
    # Job type names only: a filter never carries characters a database may refuse (NUL).
    type: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    limit: int = Field(default=20, ge=1)
    cursor: str | None = Field(default=None, pattern="^[0-9a-hjkmnp-tv-z]{26}$")


# -- answers (documented in the OpenAPI description) ----------------------------------


class JobError(BaseModel):
    """Why a job or an attempt failed."""

    type: str
    message: str


class Progress(BaseModel):
    """The job's last reported progress."""

    fraction: float = Field(ge=0, le=1)
    message: str | None


class AttemptResource(BaseModel):
    """One run of the job (a delivery that ran it)."""

    number: int = Field(description="the delivery's number: its task's retry count + 1")
    run: int | None = Field(description="the job's run counter, continuations included")
    started_at: str
    finished_at: str | None
    outcome: str | None = Field(
        description="succeeded, continued (its slice was spent: the job goes on in a new "
        "run), transient_error, error, deadline_exceeded, permanent_error, cancelled, "
        "invalid_payload, invalid_result, interrupted; null while running"
    )
    error: str | None


class StepResource(BaseModel):
    """One ``ctx.step`` of a durable job."""

    name: str
    status: str = Field(pattern="^(running|finished|failed)$")
    run: int = Field(description="the run that last started it")
    started_at: str
    finished_at: str | None


class DeliveryResource(BaseModel):
    """One webhook delivery of a finished job."""

    id: str = Field(description="the webhook-id header: the same on every retry")
    event: str = Field(pattern="^job\\.(succeeded|failed|cancelled)$")
    state: str = Field(
        description="pending (task not created yet), enqueued (sending, retried with the "
        "queue's backoff), delivered (2xx), failed (attempts used up or URL refused)"
    )
    attempts: int
    last_status: int | None = Field(description="the receiver's last HTTP status")
    last_error: str | None
    created_at: str
    delivered_at: str | None


class NotifyResource(BaseModel):
    """The job's webhook and its deliveries."""

    url: str
    deliveries: list[DeliveryResource]


class ChildCounts(BaseModel):
    """A parent's children, counted."""

    total: int
    open: int = Field(description="children not finished yet")
    by_status: dict[str, int]


class JobResource(BaseModel):
    """A job: the status monitor of ``GET /jobs/{id}``."""

    id: str
    type: str
    status: str = Field(pattern="^(" + "|".join(STATUSES) + ")$")
    reason: str | None = Field(
        description="why it ended or was requeued: continued, deadline_exceeded, permanent_error, "
        "transient_error, error, max_attempts_exceeded, invalid_payload, unknown_job_type, "
        "cancelled_by_client ..."
    )
    payload: dict[str, Any]
    result: Any = Field(description="what the job returned (JSON), once succeeded")
    error: JobError | None
    progress: Progress | None
    cancel_requested: bool
    attempts: int
    max_attempts: int
    deadline_seconds: float
    request_id: str
    resubmit_of: str | None
    wakeup: str | None = Field(
        pattern="^(pending|enqueued)$",
        description="a queued job's wake-up: pending (recorded while Cloud Tasks was "
        "unreachable; it runs once Cloud Tasks is back) or enqueued; null once it runs",
    )
    created_at: str
    updated_at: str
    scheduled_at: str | None
    first_started_at: str | None = Field(description="when the first attempt started")
    started_at: str | None = Field(description="when the last (or current) attempt started")
    finished_at: str | None
    notify: NotifyResource | None = Field(description="the submission's webhook, if any")
    attempt_log: list[AttemptResource] | None = Field(
        default=None,
        description="every attempt; left out of the items of GET /jobs (read one job for it)",
    )
    runs: int = Field(description="how many runs (requests) the job took, continuations too")
    steps: list[StepResource] | None = Field(
        default=None,
        description="the ctx.step steps; left out of the items of GET /jobs (read one job)",
    )
    checkpoint_at: str | None = Field(description="when ctx.checkpoint last saved its cursor")
    parent_id: str | None = Field(description="the job that spawned this one (ctx.spawn_many)")
    waiting: bool = Field(description="its run ended in ctx.wait_for: its last child wakes it")
    children: ChildCounts | None = Field(
        description="its children counted by status (GET /jobs/{id}/children lists them)"
    )


class JobPage(BaseModel):
    """A page of jobs."""

    jobs: list[JobResource]
    next_cursor: str | None
    next: str | None


class ValidationItem(BaseModel):
    """One validation problem."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None
    errors: list[ValidationItem] | None = None


class BatchEntry(BaseModel):
    """One entry of a batch answer: the job (``status`` 200 or 202), or its problem."""

    status: int = Field(description="what POST /jobs would have answered for this item")
    job: JobResource | None = None
    problem: Problem | None = None


class BatchAnswer(BaseModel):
    """The answer of ``POST /jobs/batch``: one entry per submission, in order."""

    jobs: list[BatchEntry]
