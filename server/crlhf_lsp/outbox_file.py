"""The outbox's SQLite file (:mod:`crlhf_lsp.outbox`): opened private to the user (0600 in a
0700 folder when created here: it holds the code around every completion), checked page by
page, migrated to the current schema; a file SQLite cannot read (truncated, overwritten) is
moved aside as ``<name>.corrupt-<UTC time>`` and a fresh one started, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "CorruptOutbox", "open_outbox"]

log = logging.getLogger("crlhf_lsp.outbox")  # the outbox's logger, as before the split

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    dead TEXT,
    created REAL NOT NULL,
    set_aside_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (dead, kind, id);
"""
# ``dead`` holds the reason a row was set aside (the name predates "set aside"; existing
# files keep their column). ``set_aside_at`` came in schema version 1.
SCHEMA_VERSION = 1


def open_outbox(path: Path, warn: Callable[[str], None]) -> sqlite3.Connection:
    """The outbox file at ``path``, checked and migrated; a damaged one is moved aside (and
    ``warn`` told where) and a new one started."""
    _private_dirs(path.parent)
    try:
        return _connect(path)
    except sqlite3.DatabaseError as exc:
        if not _corrupt(exc):
            raise  # locked, read-only, no such folder: the file may be fine, keep it
        aside = _move_aside(path)
        warn(
            f"crlhf: the outbox {path} could not be read ({exc}); it was moved to "
            f"{aside} and a new one started. Ratings that were waiting in it are in that "
            "file, not lost: the sqlite3 tool's .recover may get them back"
        )
        return _connect(path)


def _private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents 0700; folders that exist are left alone
    (an outbox set in a shared folder must not change that folder's mode)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        with contextlib.suppress(FileExistsError):
            created.mkdir(mode=0o700)
            created.chmod(0o700)  # mkdir's mode is cut by the umask


class CorruptOutbox(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` found damage."""


def _corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Damage (not a database, malformed image), as opposed to a locked or unwritable file
    that another crlhf-lsp or the file system holds: only damage is moved aside."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return isinstance(exc, CorruptOutbox) or name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating 0600) and check the outbox file; ``sqlite3.DatabaseError`` if it is
    not a readable outbox. SQLite gives the -wal and -shm files the database's mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    path.chmod(0o600)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # quick_check reads every page: a truncated file fails here, not at the first flush.
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise CorruptOutbox("; ".join(problems)[:500])
        db.executescript(SCHEMA)
        _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        if "set_aside_at" not in columns:  # a file of the first version
            db.execute("ALTER TABLE outbox ADD COLUMN set_aside_at REAL")
            db.execute("UPDATE outbox SET set_aside_at = created WHERE dead IS NOT NULL")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _move_aside(path: Path) -> Path:
    """Rename the unreadable outbox (and its -wal/-shm) to ``<name>.corrupt-<UTC time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(f"{aside}{suffix}")
    log.warning("outbox %s could not be read; moved to %s", path, aside)
    return aside
