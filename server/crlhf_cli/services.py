"""The demo's store: an SQLite ``crlhf-store serve`` process in the working folder.

Tokens and honeypots go in through the store's own admin functions (what
``crlhf-store create-annotator`` and ``import-honeypots`` run), against the same database.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crlhf_contract.schemas import HoneypotIn, Scope
from crlhf_store.process import StoreNotReady, free_port, serve_command, stop_process, wait_ready

__all__ = ["DemoError", "StoreProcess"]


class DemoError(Exception):
    """A step of the demo failed; the message names the step, the log and the fix."""


@dataclass
class StoreProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)  # extra CRLHF_* settings
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'store.db').resolve()}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "store.log"

    def start(self, timeout: float = 120.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._database().dispose()  # migrate before the tokens are made
        cmd = serve_command(port=self.port, data_dir=self.data_dir, database_url=self.database_url)
        env = os.environ | {"PYTHONUNBUFFERED": "1"} | self.env
        env.pop("CRLHF_DATABASE_URL", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(
                self.process, self.url, timeout=timeout, log=lambda: f"; see {self.log_path}"
            )
        except StoreNotReady as exc:
            self.stop()
            raise DemoError(str(exc)) from exc

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None

    def _database(self):  # type: ignore[no-untyped-def]
        from crlhf_store.db import Database

        db = Database(self.database_url, pool_size=1, max_overflow=0)
        db.migrate()
        return db

    def create_tokens(self, names: Iterable[tuple[str, Scope]]) -> dict[str, str]:
        """A new token per (annotator name, scope), as ``crlhf-store create-annotator`` does."""
        from crlhf_store.tokens import create_annotator

        db = self._database()
        try:
            with db.writing() as session:
                return {
                    name: create_annotator(session, name=name, scope=scope) for name, scope in names
                }
        finally:
            db.dispose()

    def import_honeypots(self, honeypots: list[HoneypotIn]) -> int:
        """As ``crlhf-store import-honeypots FILE.jsonl``; returns how many are new."""
        from crlhf_store.honeypots import import_honeypots

        db = self._database()
        try:
            with db.writing() as session:
                imported, _ = import_honeypots(session, honeypots=honeypots)
        finally:
            db.dispose()
        return imported
