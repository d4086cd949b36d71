"""Jobs are found by the request that submitted them (the console's search).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:30:00.000000
"""

from __future__ import annotations

from alembic import op

from offload.store import schema  # noqa: F401 - types of the project's columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_offload_jobs_request_id", ["request_id"], unique=False)


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("offload_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_offload_jobs_request_id")
