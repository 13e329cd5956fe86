"""Engines, sessions and migrations for SQLite and PostgreSQL.

Writes on SQLite: one writer at a time is all SQLite allows, so write transactions start
with ``BEGIN IMMEDIATE`` (taking the write lock up front; a deferred transaction that
reads first and writes later can fail with SQLITE_BUSY instead of waiting) and, inside
one process, queue on a lock first (SQLite's busy handler polls with sleeps up to 100 ms,
which would wreck tail latency under concurrent clients). ``busy_timeout`` still covers
other processes (the admin CLI while the server runs).

Durability on SQLite: ``synchronous=FULL``. In WAL mode ``NORMAL`` syncs only at
checkpoints, so a batch the store had answered 200 for could vanish on a power loss, and
the client (told it was stored) would never send it again. ``FULL`` syncs the WAL at every
commit; what that costs is measured in the README (``bench/store_ingest.py``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x63726C6866  # "crlhf": several store processes may start at once


class Database:
    """One database: ``with db.reading() as s`` / ``with db.writing() as s`` (commits)."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 30) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=not self.is_sqlite
        )
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction, committed when the block ends, rolled back if it raises."""
        with self._write_lock, self._write() as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest revision (safe to call from several processes)."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            try:
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                    conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()


def is_postgresql(session: Session) -> bool:
    """Whether ``session`` talks to PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def alembic_config() -> Config:
    """Alembic's config built in code, so an installed package needs no alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged batch is on disk
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())
