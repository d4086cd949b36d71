"""Job events (stream, long-poll), webhook deliveries, first_started_at and notify_url.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from offload.store import schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_started_at", schema.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("notify_url", sa.String(length=2048), nullable=True))

    op.create_table(
        "offload_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["offload_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("offload_events", schema=None) as batch_op:
        batch_op.create_index("ix_offload_events_job_id_id", ["job_id", "id"], unique=False)

    op.create_table(
        "offload_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=26), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", schema.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["offload_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("offload_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_offload_deliveries_job_id", ["job_id"], unique=False)
        batch_op.create_index("ix_offload_deliveries_state", ["state", "created_at"], unique=False)


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("offload_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_offload_deliveries_state")
        batch_op.drop_index("ix_offload_deliveries_job_id")
    op.drop_table("offload_deliveries")
    with op.batch_alter_table("offload_events", schema=None) as batch_op:
        batch_op.drop_index("ix_offload_events_job_id_id")
    op.drop_table("offload_events")
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.drop_column("notify_url")
        batch_op.drop_column("first_started_at")
