"""Tables of the job store (SQLAlchemy Core; the same schema on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

__all__ = [
    "SCHEMA_REVISION",
    "VERSION_TABLE",
    "attempts",
    "deliveries",
    "events",
    "jobs",
    "metadata",
    "steps",
]

# The newest migration (offload/store/migrations/versions/): services refuse to serve on
# a database behind it. Revisions are numbered, so "behind" is a comparison; a test
# checks that this is the migrations' head and that the tables below match them.
SCHEMA_REVISION = "0006"
# Alembic's version table, with the project's prefix (the database may be shared).
VERSION_TABLE = "offload_schema_version"


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
    # The outbox (docs/ARCHITECTURE.md, "Outbox and reconciler"): the job's wake-up, kept
    # on its own row so that recording a job and its wake-up is one INSERT.
    # wakeup: enqueuing (web is creating the task), pending (not in Cloud Tasks: the
    # reconciler creates it), enqueued (seen in Cloud Tasks). wakeup_number is the
    # number in the task's name; wakeup_due_at when the reconciler should look again.
    Column("wakeup", String(16)),
    Column("wakeup_number", Integer, nullable=False, default=0, server_default="0"),
    Column("wakeup_due_at", UTCDateTime),
    # When the first attempt started (started_at is the last attempt's start).
    Column("first_started_at", UTCDateTime),
    # Where a webhook goes when the job finishes (the submission's notify.url).
    Column("notify_url", String(2048)),
    # Durable jobs: runs counts every run (continuations too; attempts only those that
    # use an attempt); continuing marks a job waiting for its continuation task, whose
    # claim uses no attempt; spent_seconds is the running time of the current attempt's
    # runs (its budget is deadline_seconds); checkpoint is ctx.checkpoint's last value.
    Column("runs", Integer, nullable=False, default=0, server_default="0"),
    Column("continuing", Boolean, nullable=False, default=False, server_default="0"),
    Column("spent_seconds", Float, nullable=False, default=0.0, server_default="0"),
    Column("checkpoint", JSON),
    Column("checkpoint_at", UTCDateTime),
    # Fan-out: a child names its parent; a parent counts its unfinished children (set in
    # the transaction that inserts them, so it is right before any child can finish) and
    # waiting marks a parent whose run ended in ctx.wait_for (its last child wakes it).
    Column("parent_id", String(26)),
    Column("children_open", Integer, nullable=False, default=0, server_default="0"),
    Column("waiting", Boolean, nullable=False, default=False, server_default="0"),
    # An idempotency key is the client's: two clients may use the same one.
    UniqueConstraint("owner", "idempotency_key", name="uq_offload_jobs_owner_key"),
    # Lists page newest first by id (ids are time-ordered), filtered by status or type,
    # for every client (admin) or for one.
    Index("ix_offload_jobs_status_id", "status", "id"),
    Index("ix_offload_jobs_type_id", "type", "id"),
    Index("ix_offload_jobs_owner_status_id", "owner", "status", "id"),
    # Expiry finds finished jobs by age.
    Index("ix_offload_jobs_finished_at", "finished_at"),
    # A parent's children, in spawn order (ids), and its cancel finds the unfinished ones.
    # Partial: most jobs have no parent, and with their NULLs in it ANALYZE tells SQLite's
    # planner that one parent_id matches every row, so it scanned another index instead.
    Index(
        "ix_offload_jobs_parent_id_id",
        "parent_id",
        "id",
        sqlite_where=text("parent_id IS NOT NULL"),
        postgresql_where=text("parent_id IS NOT NULL"),
    ),
    # The reconciler finds waiting parents whose last child's wake-up was never created.
    Index(
        "ix_offload_jobs_waiting_updated_at",
        "updated_at",
        sqlite_where=text("waiting = 1"),
        postgresql_where=text("waiting"),
    ),
    # The reconciler finds queued jobs whose wake-up is due for a look.
    Index("ix_offload_jobs_status_wakeup_due", "status", "wakeup_due_at"),
    # The console finds the jobs of one request (a client quotes its X-Request-ID).
    Index("ix_offload_jobs_request_id", "request_id"),
)

attempts = Table(
    "offload_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(26), ForeignKey("offload_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("run", Integer),  # the job's run counter at this run (continuations included)
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("outcome", String(32)),
    Column("error", Text),
    Index("ix_offload_attempts_job_id", "job_id", "number"),
)

# Every change of a job, in order: what the event stream, long-poll and webhooks read.
# BIGINT on PostgreSQL; SQLite's auto-increment needs the column to be INTEGER.
_EVENT_ID = BigInteger().with_variant(Integer, "sqlite")
events = Table(
    "offload_events",
    metadata,
    Column("id", _EVENT_ID, primary_key=True, autoincrement=True),
    Column("job_id", String(26), ForeignKey("offload_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # A stream reads one job's events after the last it sent.
    Index("ix_offload_events_job_id_id", "job_id", "id"),
)

# One webhook delivery (per finished job with a notify URL): the outbox row written in
# the finishing transaction, then a Cloud Task that sends it.
deliveries = Table(
    "offload_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),  # the webhook-id, stable across retries
    Column("job_id", String(26), ForeignKey("offload_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("state", String(16), nullable=False),  # pending, enqueued, delivered, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_status", Integer),
    Column("last_error", String(500)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Index("ix_offload_deliveries_job_id", "job_id"),
    # The sweep finds deliveries whose task was never created.
    Index("ix_offload_deliveries_state", "state", "created_at"),
)

# The steps of durable jobs (ctx.step): a finished step's result is returned by every
# later run instead of running the step again.
steps = Table(
    "offload_steps",
    metadata,
    Column("job_id", String(26), ForeignKey("offload_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # running, finished, failed
    Column("run", Integer, nullable=False),  # the run that last started (or finished) it
    Column("result", JSON),
    Column("error", Text),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    PrimaryKeyConstraint("job_id", "name", name="pk_offload_steps"),
)
