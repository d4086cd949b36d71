"""The outbox: each job's wake-up (its Cloud Task) on its own row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from offload.store import schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wakeup", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("wakeup_number", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("wakeup_due_at", schema.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_offload_jobs_status_wakeup_due", ["status", "wakeup_due_at"], unique=False
        )
    # Unfinished jobs of before: the reconciler looks at each once, at its next pass.
    op.execute(
        "UPDATE offload_jobs SET wakeup_due_at = updated_at WHERE status IN ('queued', 'running')"
    )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_offload_jobs_status_wakeup_due")
        batch_op.drop_column("wakeup_due_at")
        batch_op.drop_column("wakeup_number")
        batch_op.drop_column("wakeup")
