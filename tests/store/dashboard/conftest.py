"""Fixtures of the dashboard's tests.

``db`` (function scope, both backends): a migrated :class:`~crlhf_store.db.Database` on a
fresh SQLite or PostgreSQL database, for the statistics computed in process.

``crowd_store`` (module scope): a real store process filled by ``dashboard/crowd.py`` (the
crowd simulator's annotators, honeypots, ratings, aggregation runs, adapters, retention
checks), with what was filled; ``admin``: an ``httpx.Client`` logged in to its dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from conftest import LiveStore, start_live_store
from crlhf_store.db import Database
from dashboard.crowd import Filled, fill, login


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, pool_size=2, max_overflow=0)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def crowd_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveStore, Filled]]:
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    store = start_live_store(Path(folder) / "store")
    try:
        yield store, fill(store)
    finally:
        store.stop()


@pytest.fixture(scope="module")
def admin(crowd_store: tuple[LiveStore, Filled]) -> Iterator[httpx.Client]:
    store, _ = crowd_store
    with closing(login(store.url, store.admin_token)) as http:
        yield http
