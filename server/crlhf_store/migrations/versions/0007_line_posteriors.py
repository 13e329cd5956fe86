"""completion rewards: the posterior of each line

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 18:00:00

``completion_rewards.line_posteriors``: P(line correct) per line, as the trainer's
aggregation gave it, so ``crlhf-store export-dataset`` writes them out without
aggregating again. NULL for the runs posted before this revision (and by older trainers).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("completion_rewards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("line_posteriors", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("completion_rewards", schema=None) as batch_op:
        batch_op.drop_column("line_posteriors")
