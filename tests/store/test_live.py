"""The real server process on both databases: restarts, concurrent clients, live export."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import LiveStore, start_live_store
from crlhf_contract.client import StoreClient
from store_helpers import completion, rating


def test_live_store_fixture_serves_every_scope(live_store) -> None:  # type: ignore[no-untyped-def]
    with live_store.client() as alice, live_store.client(live_store.trainer_token) as trainer:
        assert alice.me().annotator == "alice"
        assert trainer.me().scopes == ["annotator", "trainer"]
    with live_store.client(live_store.admin_token) as admin:
        assert "admin" in admin.me().scopes


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real server per backend for this module; each test works on its own rows."""
    data_dir = tmp_path_factory.mktemp(f"live-{request.param}")
    url = None
    if request.param == "postgresql":
        import psycopg

        pg_url = request.getfixturevalue("pg_url")
        schema = f"live_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{pg_url}?options=-csearch_path%3D{schema}"
    store = start_live_store(data_dir, url)
    yield store
    store.stop()


def _post(url: str, token: str, path: str, body: dict) -> dict:
    r = httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _mine(labels: list, completions: list[dict]) -> list:  # type: ignore[type-arg]
    ids = {uuid.UUID(c["id"]) for c in completions}
    return [x for x in labels if x.completion_id in ids]


def _export_all(store, after: str | None = None, limit: int = 5000) -> tuple[list, str | None]:  # type: ignore[no-untyped-def]
    labels = []
    with store.client(store.trainer_token) as trainer:
        for page in trainer.iter_label_pages(after, limit):
            labels += page.labels
            after = page.next or after
    return labels, after


def test_the_same_batch_posted_concurrently_is_stored_once(server: LiveStore) -> None:
    store = server
    cs = [completion() for _ in range(5)]
    batch = {"ratings": [rating(c["id"], line) for c in cs for line in range(3)] * 1}
    barrier = threading.Barrier(12)

    def post(path: str, body: dict) -> dict:
        barrier.wait()
        return _post(store.url, store.annotator_token, path, body)

    with ThreadPoolExecutor(12) as pool:
        done = list(pool.map(lambda _: post("/v1/completions", {"completions": cs}), range(12)))
        assert sum(d["stored"] for d in done) == 5
        # half of them in reverse order: overlapping batches must not deadlock each other
        backwards = {"ratings": batch["ratings"][::-1]}
        done = list(pool.map(lambda i: post("/v1/ratings", (batch, backwards)[i % 2]), range(12)))
    assert sum(d["stored"] for d in done) == 15
    assert sum(d["duplicates"] for d in done) == 15 * 11
    assert len(_mine(_export_all(store)[0], cs)) == 15


def test_export_cursors_neither_skip_nor_repeat_while_ratings_are_written(
    server: LiveStore,
) -> None:
    store = server
    c = completion(text="\n".join(f"line {i}" for i in range(50)))
    _post(store.url, store.annotator_token, "/v1/completions", {"completions": [c]})
    writers, batches, per_batch = 4, 10, 25
    stop = threading.Event()
    seen: list[int] = []
    start = _export_all(store)[1]  # rows of earlier tests are not this test's business

    def write(_: int) -> None:
        with StoreClient(store.url, store.annotator_token) as client:
            for _ in range(batches):
                rows = [rating(c["id"], line % 50) for line in range(per_batch)]
                client._request("POST", "/v1/ratings", json={"ratings": rows})

    def read() -> None:
        after = start
        while not stop.is_set():
            labels, after = _export_all(store, after, limit=40)
            seen.extend(x.rating_id for x in _mine(labels, [c]))
        labels, after = _export_all(store, after, limit=40)
        seen.extend(x.rating_id for x in _mine(labels, [c]))

    reader = threading.Thread(target=read)
    reader.start()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))
    stop.set()
    reader.join(120)
    total = writers * batches * per_batch
    assert len(seen) == total, f"{len(seen)} exported, {total} written"
    assert len(set(seen)) == total  # nothing repeated


def test_a_restart_keeps_everything(server: LiveStore) -> None:
    store = server
    c = completion()
    _post(store.url, store.annotator_token, "/v1/completions", {"completions": [c]})
    ratings = [rating(c["id"], line) for line in range(3)]
    _post(store.url, store.annotator_token, "/v1/ratings", {"ratings": ratings})
    before = _mine(_export_all(store)[0], [c])
    store.restart()
    with store.client() as alice:
        assert alice.me().annotator == "alice"  # tokens survive
    after = _mine(_export_all(store)[0], [c])
    assert [x.rating_id for x in after] == [x.rating_id for x in before] and len(after) == 3
    again = _post(store.url, store.annotator_token, "/v1/ratings", {"ratings": ratings})
    assert again == {"stored": 0, "duplicates": 3}  # idempotency survives too


@pytest.mark.slow  # 10-20 s: make test runs it, make check does not
def test_several_workers_store_each_rating_once(db_url: str, start_store) -> None:  # type: ignore[no-untyped-def]
    """``--workers 2`` (here ``CRLHF_WORKERS``): two processes share the port and the
    database; a batch posted by 12 clients at once still lands once, in the export."""
    import psutil

    store = start_store(db_url, workers="2")
    workers = psutil.Process(store.process.pid).children(recursive=True)
    assert len([p for p in workers if "python" in p.name().lower()]) >= 2, store.log()
    cs = [completion() for _ in range(4)]
    _post(store.url, store.annotator_token, "/v1/completions", {"completions": cs})
    batch = {"ratings": [rating(c["id"], line) for c in cs for line in range(3)]}
    with ThreadPoolExecutor(12) as pool:
        done = list(
            pool.map(
                lambda _: _post(store.url, store.annotator_token, "/v1/ratings", batch), range(12)
            )
        )
    assert sum(d["stored"] for d in done) == 12
    assert sum(d["duplicates"] for d in done) == 12 * 11
    assert len(_mine(_export_all(store)[0], cs)) == 12
