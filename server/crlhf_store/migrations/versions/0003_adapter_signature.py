"""adapters: the trainer's Ed25519 signature

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 07:00:00

``adapters.signature``: the base64 Ed25519 signature the trainer sent with the upload
(:mod:`crlhf_contract.signing`), returned in ``AdapterOut``; NULL for an adapter published
unsigned (all of those before this revision). The store does not verify it: it holds no
key, and the editors verify against the key they were given, not against the store.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.drop_column("signature")
