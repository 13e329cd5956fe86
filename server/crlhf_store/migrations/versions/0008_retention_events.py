"""completion events: the payload of ``retained`` events and their export position

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 18:20:00

Issue 17, implicit per-line signals. ``completion_events.payload`` (JSON, NULL for the
kinds before) holds a ``retained`` event's ``after_s`` and per-line ``lines``
(:mod:`crlhf_contract.retention`); ``seq`` is its position in ``GET /v1/retention/export``,
stamped after it committed like the other exports' (export.py). A partial index finds the
retained events not stamped yet; other kinds are never stamped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_UNSEQUENCED = "kind = 'retained' AND seq IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("completion_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint("uq_completion_events_seq", ["seq"])
    op.create_index(
        "ix_completion_events_unsequenced",
        "completion_events",
        ["id"],
        unique=False,
        sqlite_where=sa.text(_UNSEQUENCED),
        postgresql_where=sa.text(_UNSEQUENCED),
    )


def downgrade() -> None:
    op.drop_index("ix_completion_events_unsequenced", table_name="completion_events")
    with op.batch_alter_table("completion_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_completion_events_seq", type_="unique")
        batch_op.drop_column("seq")
        batch_op.drop_column("payload")
