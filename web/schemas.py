"""Request bodies and query strings of the public API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload.store import STATUSES

__all__ = ["ListQuery", "SubmitJob"]

# Cloud Tasks accepts a schedule_time at most 30 days ahead.
MAX_DELAY_SECONDS = 30 * 24 * 3600


class SubmitJob(BaseModel):
    """Body of ``POST /jobs``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100, description="A registered job type.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Input of the job.")
    delay_seconds: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_SECONDS, description="Run no earlier than this."
    )
    deadline_seconds: float | None = Field(
        default=None, gt=0, description="A tighter time budget than the job type's own."
    )


class ListQuery(BaseModel):
    """Query string of ``GET /jobs``."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(default=None, pattern="^(" + "|".join(STATUSES) + ")$")
    type: str | None = Field(default=None, min_length=1, max_length=100)
    limit: int = Field(default=20, ge=1)
    cursor: str | None = Field(default=None, pattern="^[0-9a-hjkmnp-tv-z]{26}$")
