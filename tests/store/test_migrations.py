"""The migrations build the schema the models describe, on both databases: a column added to
``models.py`` without its revision (or a revision that drifts from the model) fails here,
before a deployed store meets it."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from crlhf_store.dashboard import models as _dashboard_models  # noqa: F401 - its tables
from crlhf_store.db import Database
from crlhf_store.models import Base


def _drift(url: str) -> list[object]:
    db = Database(url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        db.dispose()


def test_the_migrated_schema_is_the_models_schema(db_url: str) -> None:
    diffs = _drift(db_url)
    assert diffs == [], f"models and migrations differ: {diffs}"
