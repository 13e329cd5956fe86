"""dashboard: login sessions and the adapter status history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 05:10:00

``dashboard_sessions``: a login of the dashboard (the cookie holds a random id; only its
sha256 is stored, next to the admin token it was opened with, so revoking the token ends
the session). ``adapter_status_changes``: who published or retired which adapter when.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"]),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_table(
        "adapter_status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["adapter_id"], ["adapters.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_adapter_status_changes_adapter", "adapter_status_changes", ["adapter_id"])


def downgrade() -> None:
    op.drop_index("ix_adapter_status_changes_adapter", table_name="adapter_status_changes")
    op.drop_table("adapter_status_changes")
    op.drop_table("dashboard_sessions")
