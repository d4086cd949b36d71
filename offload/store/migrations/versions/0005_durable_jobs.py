"""Durable jobs: the steps table, checkpoints, the run counter, the runs of the attempt log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:27:58.859852
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from offload.store import schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "offload_steps",
        sa.Column("job_id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", schema.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["offload_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "name", name="pk_offload_steps"),
    )
    # Plain ADD COLUMNs (constant defaults), never SQLite's batch "move and copy": copying
    # offload_jobs would drop it, and ON DELETE CASCADE would take every attempt with it.
    op.add_column("offload_attempts", sa.Column("run", sa.Integer(), nullable=True))
    op.add_column(
        "offload_jobs", sa.Column("runs", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "offload_jobs",
        sa.Column("continuing", sa.Boolean(), server_default="0", nullable=False),
    )
    op.add_column(
        "offload_jobs",
        sa.Column("spent_seconds", sa.Float(), server_default="0", nullable=False),
    )
    op.add_column("offload_jobs", sa.Column("checkpoint", sa.JSON(), nullable=True))
    op.add_column(
        "offload_jobs",
        sa.Column("checkpoint_at", schema.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    """Undo this revision (the steps, checkpoints and run counts are lost)."""
    op.drop_table("offload_steps")
    # Plain DROP COLUMNs (SQLite 3.35+ has them): a batch copy of offload_jobs would
    # cascade-delete the attempts.
    op.drop_column("offload_attempts", "run")
    for column in ("checkpoint_at", "checkpoint", "spent_seconds", "continuing", "runs"):
        op.drop_column("offload_jobs", column)
