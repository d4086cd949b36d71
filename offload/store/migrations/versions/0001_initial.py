"""The first release's schema: jobs and their attempts.

Revision ID: 0001
Revises:
Create Date: 2026-12-01 22:11:43.676187
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from offload.store import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "offload_jobs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("trace", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=320), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("deadline_seconds", sa.Float(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("progress_message", sa.String(length=500), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("task_name", sa.String(length=600), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("scheduled_at", schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resubmit_of", sa.String(length=26), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_offload_jobs_owner_key"),
    )
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_offload_jobs_finished_at", ["finished_at"], unique=False)
        batch_op.create_index(
            "ix_offload_jobs_owner_status_id", ["owner", "status", "id"], unique=False
        )
        batch_op.create_index("ix_offload_jobs_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_offload_jobs_type_id", ["type", "id"], unique=False)

    op.create_table(
        "offload_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=26), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["offload_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("offload_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_offload_attempts_job_id", ["job_id", "number"], unique=False)


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("offload_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_offload_attempts_job_id")

    op.drop_table("offload_attempts")
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_offload_jobs_type_id")
        batch_op.drop_index("ix_offload_jobs_status_id")
        batch_op.drop_index("ix_offload_jobs_owner_status_id")
        batch_op.drop_index("ix_offload_jobs_finished_at")

    op.drop_table("offload_jobs")
