"""The demo's store: an SQLite ``crlhf-store serve`` process in the working folder.

Tokens and honeypots go in through the store's own admin functions (what
``crlhf-store create-annotator`` and ``import-honeypots`` run), against the same database.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from crlhf_store.schemas import HoneypotIn, Scope

__all__ = ["DemoError", "StoreProcess", "free_port"]


class DemoError(Exception):
    """A step of the demo failed; the message names the step, the log and the fix."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        cmd = [
            sys.executable,
            "-m",
            "crlhf_store",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.database_url,
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        env = os.environ | {"PYTHONUNBUFFERED": "1"} | self.env
        env.pop("CRLHF_DATABASE_URL", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"crlhf-store exited early; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise DemoError(f"crlhf-store did not get ready in {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
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
