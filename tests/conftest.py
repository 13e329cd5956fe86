"""Shared fixtures of the whole suite.

Stores for tests (reuse these rather than starting your own):

``live_store`` (function scope)
    A REAL ``crlhf-store serve`` process on a free loopback port with a fresh SQLite data
    dir. Returns a :class:`LiveStore`: ``url``, ``admin_token``, ``trainer_token``,
    ``annotator_token`` (annotators ``admin``, ``trainer``, ``alice``), ``data_dir``,
    ``client(token)`` → :class:`crlhf_contract.client.StoreClient`, ``new_token(name, scope)``,
    ``restart()`` and ``stop()``. Stopped at the end of the test.

``start_live_store(data_dir, database_url=None, **env)``
    The function behind it, for a store on PostgreSQL or with other settings.

``pg_url`` (session scope)
    URL of a throwaway PostgreSQL database for this test session, dropped at the end;
    skips the test (and says so loudly at the end of the run) when PostgreSQL on
    127.0.0.1:5432 is unreachable. ``fresh_pg_url`` gives a fresh schema in it per test.

``db_url`` (function scope, parametrised ``sqlite`` / ``postgresql``)
    A fresh empty database URL on each backend: a test using it runs on both.

``tiny_model`` (session scope)
    Folder of a tiny Llama + tokenizer built offline and cached (``tests/tiny_model.py``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from crlhf_store.process import StoreNotReady, free_port, serve_command, stop_process, wait_ready
from tiny_model import tiny_model  # noqa: F401 - fixture: the tiny model's folder (cached)

ROOT = Path(__file__).resolve().parents[1]
# $CRLHF_TEST_PG=host:port points the PostgreSQL tests elsewhere (default 127.0.0.1:5432).
PG_HOST, _, _port = os.environ.get("CRLHF_TEST_PG", "127.0.0.1:5432").partition(":")
PG_PORT = int(_port or 5432)
_PG_STATUS: dict[str, str] = {}


# --- a real store process ----------------------------------------------------------------


@dataclass
class LiveStore:
    """A ``crlhf-store serve`` process and the tokens made for it."""

    url: str
    data_dir: Path
    database_url: str
    admin_token: str
    trainer_token: str
    annotator_token: str
    port: int
    env: dict[str, str] = field(repr=False, default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(repr=False, default=None)

    def client(self, token: str | None = None, **kwargs):  # type: ignore[no-untyped-def]
        """A StoreClient; ``token`` defaults to the annotator's."""
        from crlhf_contract.client import StoreClient

        return StoreClient(self.url, token or self.annotator_token, **kwargs)

    def new_token(self, name: str, scope: str = "annotator") -> str:
        """Create (or reuse) annotator ``name`` and return a new token of ``scope``."""
        from crlhf_store.db import Database
        from crlhf_store.tokens import create_annotator

        db = Database(self.database_url, pool_size=1, max_overflow=0)
        try:
            with db.writing() as session:
                return create_annotator(session, name=name, scope=scope)  # type: ignore[arg-type]
        finally:
            db.dispose()

    def start(self) -> None:
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115
        cmd = serve_command(port=self.port, data_dir=self.data_dir, database_url=self.database_url)
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        try:
            wait_ready(self.process, self.url, timeout=60, poll=0.1, log=lambda: f":\n{self.log()}")
        except StoreNotReady:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def start_live_store(data_dir: Path, database_url: str | None = None, **env: str) -> LiveStore:
    """Migrate, create tokens for ``admin``/``trainer``/``alice``, start the server."""
    from crlhf_store.db import Database
    from crlhf_store.tokens import create_annotator

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{data_dir / 'store.db'}"
    db = Database(database_url, pool_size=1, max_overflow=0)
    db.migrate()
    with db.writing() as session:
        tokens = {
            scope: create_annotator(session, name=name, scope=scope)
            for name, scope in [("admin", "admin"), ("trainer", "trainer"), ("alice", "annotator")]
        }
    db.dispose()
    port = free_port()
    full_env = (
        os.environ | {"PYTHONUNBUFFERED": "1"} | {f"CRLHF_{k.upper()}": v for k, v in env.items()}
    )
    full_env.pop("CRLHF_DATABASE_URL", None)
    store = LiveStore(
        url=f"http://127.0.0.1:{port}",
        data_dir=data_dir,
        database_url=database_url,
        admin_token=tokens["admin"],
        trainer_token=tokens["trainer"],
        annotator_token=tokens["annotator"],
        port=port,
        env=full_env,
    )
    store.start()
    return store


@pytest.fixture
def live_store(tmp_path: Path) -> Iterator[LiveStore]:
    """A real store server on SQLite in a fresh data dir (see the module docstring)."""
    store = start_live_store(tmp_path / "store")
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def start_store(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """``start_store(database_url=None, **settings)`` → LiveStore, stopped after the test."""
    started: list[LiveStore] = []

    def start(database_url: str | None = None, **env: str) -> LiveStore:
        store = start_live_store(tmp_path / f"store{len(started)}", database_url, **env)
        started.append(store)
        return store

    yield start
    for store in started:
        store.stop()


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_admin_connect():  # type: ignore[no-untyped-def]
    import psycopg

    last: Exception | None = None
    for user in ("postgres", "root"):
        try:
            conn = psycopg.connect(
                host=PG_HOST,
                port=PG_PORT,
                dbname="test",
                user=user,
                connect_timeout=3,
                autocommit=True,
            )
            return conn, user
        except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
            last = exc
    raise ConnectionError(str(last))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this session (dropped at the end)."""
    try:
        conn, user = _pg_admin_connect()
    except ConnectionError as exc:
        reason = (str(exc).splitlines() or ["no reason"])[0]
        _PG_STATUS["skipped"] = f"{PG_HOST}:{PG_PORT} unreachable ({reason})"
        pytest.skip(f"PostgreSQL unreachable at {PG_HOST}:{PG_PORT}: {exc}")
    name = f"crlhf_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _PG_STATUS["used"] = name
    try:
        yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with contextlib.suppress(Exception):
            conn, _ = _pg_admin_connect()
            with conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_url(pg_url: str) -> str:
    """A fresh schema in the session's PostgreSQL database (via ``search_path``)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{pg_url}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database on each backend; tests using it run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_pg_url")  # type: ignore[no-any-return]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that runs on PostgreSQL ``postgres`` (``-m "not postgres"`` skips them):
    those asking for ``pg_url``/``fresh_pg_url`` and the ``postgresql`` case of a backend
    parameter (``db_url`` and the module fixtures that ask for ``pg_url`` at run time)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        names = set(getattr(item, "fixturenames", ()))
        if names & {"pg_url", "fresh_pg_url"} or "postgresql" in params.values():
            item.add_marker(pytest.mark.postgres)


def _pg_skip_reason(terminalreporter) -> str | None:  # type: ignore[no-untyped-def]
    """Why the PostgreSQL tests were skipped, if they were: this process's own record, or
    (under pytest-xdist, where the workers ran them) the reason a worker's report gives."""
    if "skipped" in _PG_STATUS:
        return _PG_STATUS["skipped"]
    for report in terminalreporter.stats.get("skipped", []):
        text = str(getattr(report, "longrepr", ""))
        if "PostgreSQL unreachable" in text:
            reason = text.split("PostgreSQL unreachable", 1)[1].replace("\\n", "\n")
            return reason.splitlines()[0].strip(" :')")
    return None


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    reason = _pg_skip_reason(terminalreporter)
    if reason:
        line = f"POSTGRESQL TESTS SKIPPED: {reason}"
        terminalreporter.write_sep("!", line, red=True, bold=True)
        print(f"\n!!!!! {line} !!!!!", file=sys.stderr)
