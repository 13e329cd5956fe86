"""adapters: the download's tar, built once and stored

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:00:00

``adapters.archive_sha256`` / ``adapters.archive_size``: the deterministic tar of the PEFT
files that a download streams, built at upload and stored under ``<version>@tar`` (a
download no longer builds the whole tar in memory). NULL for an adapter uploaded before
this revision: its first download builds and records it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("archive_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("archive_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.drop_column("archive_size")
        batch_op.drop_column("archive_sha256")
