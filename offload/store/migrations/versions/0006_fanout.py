"""Fan-out: a child's parent, a parent's count of unfinished children and its waiting flag.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    # Plain ADD COLUMNs, as in 0003: a SQLite batch copy of offload_jobs would
    # cascade-delete the attempts.
    op.add_column("offload_jobs", sa.Column("parent_id", sa.String(length=26), nullable=True))
    op.add_column(
        "offload_jobs",
        sa.Column("children_open", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "offload_jobs", sa.Column("waiting", sa.Boolean(), server_default="0", nullable=False)
    )
    # Partial (children only): see the index's comment in offload/store/schema.py.
    op.create_index(
        "ix_offload_jobs_parent_id_id",
        "offload_jobs",
        ["parent_id", "id"],
        sqlite_where=sa.text("parent_id IS NOT NULL"),
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    )
    op.create_index(
        "ix_offload_jobs_waiting_updated_at",
        "offload_jobs",
        ["updated_at"],
        sqlite_where=sa.text("waiting = 1"),
        postgresql_where=sa.text("waiting"),
    )


def downgrade() -> None:
    """Undo this revision (children no longer know their parent)."""
    op.drop_index("ix_offload_jobs_waiting_updated_at", table_name="offload_jobs")
    op.drop_index("ix_offload_jobs_parent_id_id", table_name="offload_jobs")
    for column in ("waiting", "children_open", "parent_id"):
        op.drop_column("offload_jobs", column)
