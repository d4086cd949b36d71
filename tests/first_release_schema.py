"""The first release's tables, frozen: what `create_all` made before migrations existed.

The migrations test builds a database with these, fills it, and upgrades it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

__all__ = ["attempts", "jobs", "metadata"]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime on both engines (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime) and value.tzinfo is not None
        if dialect.name == "sqlite":
            # Stored naive, in UTC, so that the text sorts and compares by time.
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = MetaData()

jobs = Table(
    "offload_jobs",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(64)),
    Column("payload", JSON, nullable=False),
    Column("result", JSON),
    Column("error", JSON),
    Column("request_id", String(128), nullable=False),
    Column("trace", String(64)),
    Column("owner", String(320), nullable=False),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("deadline_seconds", Float, nullable=False),
    Column("progress", Float),
    Column("progress_message", String(500)),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("task_name", String(600)),
    Column("lease_token", String(32)),
    Column("lease_expires_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("scheduled_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("resubmit_of", String(26)),
    # An idempotency key is the client's: two clients may use the same one.
    UniqueConstraint("owner", "idempotency_key", name="uq_offload_jobs_owner_key"),
    # Lists page newest first by id (ids are time-ordered), filtered by status or type,
    # for every client (admin) or for one.
    Index("ix_offload_jobs_status_id", "status", "id"),
    Index("ix_offload_jobs_type_id", "type", "id"),
    Index("ix_offload_jobs_owner_status_id", "owner", "status", "id"),
    # Expiry finds finished jobs by age.
    Index("ix_offload_jobs_finished_at", "finished_at"),
)

attempts = Table(
    "offload_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(26), ForeignKey("offload_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("outcome", String(32)),
    Column("error", Text),
    Index("ix_offload_attempts_job_id", "job_id", "number"),
)
