"""line ratings: the author's own, the superseded, and an index for the rate limit

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 10:00:00

``line_ratings.own``: the annotator wrote the completion (an author rating their own
suggestion: a separate signal, never a crowd vote). ``line_ratings.superseded``: the same
annotator rated the same line again later; only their newest rating counts, history kept.
``ix_line_ratings_annotator_created``: the per-annotator rate limit and quota count recent
rows. Backfill: both flags from the rows already there (newest by id).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("line_ratings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("own", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("superseded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_index(
        "ix_line_ratings_annotator_created", "line_ratings", ["annotator_id", "created_at"]
    )
    op.execute(
        "UPDATE line_ratings SET own = true WHERE annotator_id = ("
        " SELECT c.annotator_id FROM completions c WHERE c.id = line_ratings.completion_id)"
    )
    op.execute(
        "UPDATE line_ratings SET superseded = true WHERE EXISTS ("
        " SELECT 1 FROM line_ratings n WHERE n.annotator_id = line_ratings.annotator_id"
        " AND n.completion_id = line_ratings.completion_id AND n.line = line_ratings.line"
        " AND n.id > line_ratings.id)"
    )


def downgrade() -> None:
    op.drop_index("ix_line_ratings_annotator_created", table_name="line_ratings")
    with op.batch_alter_table("line_ratings", schema=None) as batch_op:
        batch_op.drop_column("superseded")
        batch_op.drop_column("own")
