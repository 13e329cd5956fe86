"""review queue: slots per item, expiring assignments, a drawn kind per annotator

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 09:00:00

``completions.review_assigned``: annotators (author aside) holding or having answered a
review task of the item, kept by the queue (+1 served, -1 skipped or expired), so the
queue reads one column instead of counting raters per candidate, and on PostgreSQL a
concurrent ``next`` re-checks it when it locks the row (``FOR UPDATE SKIP LOCKED``).
``review_target``: how many of them this item should get (NULL: the store's
``review_redundancy``); ``review_priority``: serve first what is most uncertain.
``review_assignments.expires_at`` / ``released_at`` / ``answered_at``: a task not answered
by ``expires_at`` is released and frees its slot, as is a skipped one.
``annotators.review_next_kind``: the kind (honeypot or completion) drawn for an annotator's
next task, kept until a task of it can be served, so asking again does not draw again.

Backfill: ``review_assigned`` counts, as the queue did, the distinct annotators other than
the author who rated or were served an item; an assignment whose annotator rated the item
is answered; one not answered expires a day from now.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("review_assigned", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("review_target", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("review_priority", sa.Float(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("review_assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("annotators", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_next_kind", sa.String(length=16), nullable=True))
    op.create_index(
        "ix_review_assignments_open",
        "review_assignments",
        ["expires_at"],
        sqlite_where=sa.text("released_at IS NULL AND answered_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL AND answered_at IS NULL"),
    )
    op.execute(
        "UPDATE completions SET review_assigned = ("
        " SELECT count(*) FROM ("
        "  SELECT annotator_id FROM line_ratings WHERE completion_id = completions.id"
        "  UNION"
        "  SELECT annotator_id FROM review_assignments WHERE completion_id = completions.id"
        " ) AS r WHERE r.annotator_id <> coalesce(completions.annotator_id, -1))"
    )
    op.execute(
        "UPDATE review_assignments SET answered_at = created_at WHERE EXISTS ("
        " SELECT 1 FROM line_ratings r WHERE r.completion_id = review_assignments.completion_id"
        " AND r.annotator_id = review_assignments.annotator_id)"
    )
    expires = datetime.now(UTC) + timedelta(days=1)
    if op.get_bind().dialect.name == "sqlite":
        expires = expires.replace(tzinfo=None)
    unanswered = "UPDATE review_assignments SET expires_at = :t WHERE answered_at IS NULL"
    op.execute(sa.text(unanswered).bindparams(sa.bindparam("t", expires, type_=sa.DateTime())))


def downgrade() -> None:
    op.drop_index("ix_review_assignments_open", table_name="review_assignments")
    with op.batch_alter_table("annotators", schema=None) as batch_op:
        batch_op.drop_column("review_next_kind")
    with op.batch_alter_table("review_assignments", schema=None) as batch_op:
        batch_op.drop_column("answered_at")
        batch_op.drop_column("released_at")
        batch_op.drop_column("expires_at")
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.drop_column("review_priority")
        batch_op.drop_column("review_target")
        batch_op.drop_column("review_assigned")
