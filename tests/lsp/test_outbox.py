"""The outbox against a real HTTP server on 127.0.0.1 that answers what a store or a proxy
in front of it may answer (401, 403, 404, 408, 429, 503, 422 naming rows, 409, 413).

Nothing is lost: a refusal of the sender keeps every row queued; only the rows the store
rejects as rows are set aside, and those can be requeued. The file is private, a damaged
file is moved aside, set-aside rows are pruned and capped.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import crlhf_lsp.outbox
import httpx
import pytest
from crlhf_contract.client import StoreClient, StoreRejected, StoreUnavailable
from crlhf_contract.schemas import CompletionIn, EventIn, RatingIn
from crlhf_lsp.errors import OutboxFull
from crlhf_lsp.outbox import Outbox
from crlhf_lsp.outbox_send import rejected_rows

GOOD_TOKEN = "good"


class FakeStore:
    """Stores ratings by ``event_id`` like the real store (idempotent). ``answers`` is a
    queue of statuses to give before storing again; ``bad_lines`` are rejected with a
    422 naming the rows (as the real store does), or without naming them when
    ``name_rows`` is False; ``conflict`` answers 409 in the store's words."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.bad_lines: set[int] = set()
        self.name_rows = True
        self.stored: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, auth: str, body: bytes) -> tuple[int, Any, dict]:
        with self.lock:
            if self.answers:
                status = self.answers.pop(0)
                headers = {"Retry-After": "0"} if status in (429, 503) else {}
                return status, {"detail": f"answered {status}"}, headers
            if auth != f"Bearer {GOOD_TOKEN}":
                return 401, {"detail": "unknown or revoked token"}, {}
            if path == "/v1/me":
                return 200, {"annotator": "alice", "scopes": ["annotator"]}, {}
            self.posts += 1
            rows = json.loads(body)["ratings"]
            bad = [i for i, r in enumerate(rows) if r["line"] in self.bad_lines]
            if bad and self.name_rows:
                loc = [{"loc": ["body", "ratings", i, "line"], "msg": "past the end"} for i in bad]
                return 422, {"detail": loc}, {}
            if bad:
                return 422, {"detail": "a line is past the end of its completion"}, {}
            new = [r for r in rows if r["event_id"] not in self.stored]
            self.stored |= {r["event_id"]: r for r in rows}
            return 200, {"stored": len(new), "duplicates": len(rows) - len(new)}, {}


@pytest.fixture
def store() -> Iterator[tuple[FakeStore, str]]:
    fake = FakeStore()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload, headers = fake.handle(
                self.command, self.path, self.headers.get("Authorization", ""), body
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def rating(line: int = 0) -> RatingIn:
    return RatingIn(event_id=uuid.uuid4(), completion_id=uuid.uuid4(), line=line, label=1)


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


@pytest.mark.parametrize("status", [401, 403, 404, 408, 429, 503])
def test_a_refusal_of_the_sender_keeps_every_row(
    tmp_path: Path, store: tuple[FakeStore, str], status: int
) -> None:
    fake, url = store
    box = Outbox(tmp_path / "o.sqlite3")
    box.set_client(StoreClient(url, GOOD_TOKEN))
    ratings = [rating(i) for i in range(64)]
    for r in ratings:
        box.put_rating(r)
    fake.answers = [status] * 3
    for _ in range(3):
        with pytest.raises((StoreRejected, StoreUnavailable)):
            box.flush()
        assert (box.pending(), box.set_aside_count()) == (64, 0)
    assert box.flush() == 64
    assert sorted(fake.stored) == sorted(str(r.event_id) for r in ratings)
    box.stop()


def test_a_422_sets_aside_only_the_rows_it_names(
    tmp_path: Path, store: tuple[FakeStore, str]
) -> None:
    fake, url = store
    fake.bad_lines = {13, 40}
    warnings: list[str] = []
    box = Outbox(tmp_path / "o.sqlite3", warn=warnings.append)
    box.set_client(StoreClient(url, GOOD_TOKEN))
    for i in range(64):
        box.put_rating(rating(i))
    assert box.flush() == 62
    assert fake.posts == 2  # one refused naming both rows, one with the other 62
    aside = box.set_aside()
    assert sorted(json.loads(a.payload)["line"] for a in aside) == [13, 40]
    assert all(a.kind == "rating" and a.reason.startswith("422") for a in aside)
    assert box.pending() == 0 and len(fake.stored) == 62
    [warning] = [w for w in warnings if "set aside" in w]  # one for the flush, not per row
    assert "2 outbox row(s)" in warning and "crlhf.requeue" in warning

    # Without the rows named, the batch is split until the rejected rows are alone.
    fake.name_rows = False
    fake.bad_lines = {7}
    for i in range(16):
        box.put_rating(rating(i))
    assert box.flush() == 15 and box.set_aside_count() == 3

    # The store takes them once it can (here: its rule changed): requeue all, all arrive.
    fake.bad_lines = set()
    assert box.requeue() == 3
    assert box.flush() == 3
    assert (box.pending(), box.set_aside_count(), len(fake.stored)) == (0, 0, 80)
    box.stop()


def test_requeue_takes_chosen_keys_and_set_aside_rows_survive_a_restart(
    tmp_path: Path, store: tuple[FakeStore, str]
) -> None:
    fake, url = store
    fake.bad_lines = {1, 2}
    box = Outbox(tmp_path / "o.sqlite3")
    box.set_client(StoreClient(url, GOOD_TOKEN))
    box.put_rating(rating(1))
    box.put_rating(rating(2))
    box.flush()
    box.stop()
    box = Outbox(tmp_path / "o.sqlite3")
    box.set_client(StoreClient(url, GOOD_TOKEN))
    first, second = box.set_aside()
    fake.bad_lines = set()
    assert box.requeue([first.key, "no-such-key"]) == 1
    assert box.flush() == 1
    assert list(fake.stored) == [first.key] and [a.key for a in box.set_aside()] == [second.key]
    box.stop()


def test_rows_named_by_a_409_or_refused_alone_with_a_413(
    tmp_path: Path, store: tuple[FakeStore, str]
) -> None:
    assert rejected_rows("ratings[3]: event_id exists with other content", "ratings", 5) == {3}
    assert rejected_rows("completions[3]: …", "ratings", 5) == set()
    assert rejected_rows([{"loc": ["body", "ratings", 9, "line"]}], "ratings", 5) == set()
    assert rejected_rows([{"loc": ["body", "ratings"]}], "ratings", 5) == set()
    fake, url = store
    box = Outbox(tmp_path / "o.sqlite3")
    box.set_client(StoreClient(url, GOOD_TOKEN))
    box.put_rating(rating())
    fake.answers = [413]
    assert box.flush() == 0 and box.set_aside()[0].reason.startswith("413")
    box.put_rating(rating())
    box.put_rating(rating())
    fake.answers = [413]  # the pair is too large: split, the halves go through
    assert box.flush() == 2 and box.set_aside_count() == 1
    box.stop()


def test_a_refused_token_shows_in_the_status_and_a_new_one_is_tried_at_once(
    tmp_path: Path, store: tuple[FakeStore, str]
) -> None:
    fake, url = store
    warnings: list[str] = []
    changes = threading.Event()
    # A back-off of 30 s: only the new client's wake-up can make the rows arrive in time.
    box = Outbox(
        tmp_path / "o.sqlite3",
        base_delay=30,
        max_delay=60,
        warn=warnings.append,
        on_change=changes.set,
    )
    box.set_client(StoreClient(url, "mistyped"))
    ratings = [rating(i) for i in range(64)]
    for r in ratings:
        box.put_rating(r)
    box.start()
    try:
        wait_for(lambda: box.reachable is False)
        assert box.problem is not None and box.problem.startswith("token refused")
        assert [w for w in warnings if "token refused" in w] and box.pending() == 64
        box.set_client(StoreClient(url, GOOD_TOKEN))
        wait_for(lambda: box.pending() == 0, timeout=10)
        wait_for(lambda: box.reachable is True and box.problem is None)
        assert sorted(fake.stored) == sorted(str(r.event_id) for r in ratings)
        assert box.set_aside_count() == 0
        assert sum("token refused" in w for w in warnings) == 1  # told once, not per retry
    finally:
        box.stop()


def test_nothing_to_send_still_tells_a_refused_token(
    tmp_path: Path, store: tuple[FakeStore, str]
) -> None:
    _, url = store
    box = Outbox(tmp_path / "o.sqlite3", base_delay=0.05, max_delay=0.1)
    box.set_client(StoreClient(url, "revoked"))
    box.start()
    try:
        wait_for(lambda: box.reachable is False)
        assert box.problem is not None and "401" in box.problem
    finally:
        box.stop()


def test_a_retry_after_is_honoured_up_to_the_cap(
    tmp_path: Path, store: tuple[FakeStore, str]
) -> None:
    fake, url = store
    box = Outbox(tmp_path / "o.sqlite3", base_delay=0.01, max_delay=0.2)
    box.set_client(StoreClient(url, GOOD_TOKEN))
    box.put_rating(rating())
    fake.answers = [429] * 2
    box.start()
    try:
        wait_for(lambda: box.pending() == 0)
        assert box.problem is None and box.reachable is True
    finally:
        box.stop()


# --- the file ------------------------------------------------------------------------------


def test_outbox_file_and_folders_are_private(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    path = shared / "crlhf" / "deep" / "o.sqlite3"
    box = Outbox(path)
    box.put_rating(rating())
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # a folder that was there is left be
    for name in (path, Path(f"{path}-wal")):
        assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
    box.stop()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_outbox_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    for i in range(500):
        box.put_rating(rating(i))
    box._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    box.stop()
    if damage == "garbage":
        path.write_bytes(b"not a database " * 100)
    else:
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 2)
    warnings: list[str] = []
    box = Outbox(path, warn=warnings.append)
    assert box.pending() == 0
    box.put_rating(rating())
    assert box.pending() == 1
    [aside] = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert [w for w in warnings if str(aside) in w] and len(warnings) == 1
    assert stat.S_IMODE(aside.stat().st_mode) == 0o600
    box.stop()


def test_a_locked_outbox_is_not_taken_for_a_damaged_one(tmp_path: Path) -> None:
    """Another process holding the file must never get its outbox moved away."""
    path = tmp_path / "o.sqlite3"
    Outbox(path).stop()
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            Outbox(path)
        assert sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name) == []
    finally:
        holder.close()


def test_set_aside_rows_are_pruned_after_their_time_and_capped(
    tmp_path: Path, store: tuple[FakeStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = store
    fake.bad_lines = {5}
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.set_client(StoreClient(url, GOOD_TOKEN))
    for _ in range(4):
        box.put_rating(rating(5))
    box.flush()
    assert box.set_aside_count() == 4
    box.stop()
    # Two of them were set aside 31 days ago (SET_ASIDE_DAYS is 30).
    with sqlite3.connect(path) as db:
        old = time.time() - 31 * 86400
        db.execute(
            "UPDATE outbox SET set_aside_at = ? WHERE id IN (SELECT id FROM outbox LIMIT 2)",
            (old,),
        )
    db.close()
    monkeypatch.setattr(crlhf_lsp.outbox, "SET_ASIDE_CAP", 3)
    box = Outbox(path)
    assert box.set_aside_count() == 2
    box.set_client(StoreClient(url, GOOD_TOKEN))
    for _ in range(3):
        box.put_rating(rating(5))
    box.flush()
    assert box.set_aside_count() == 3  # the cap: the oldest went
    box.stop()


def test_an_outbox_file_of_the_first_version_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
            "key TEXT NOT NULL UNIQUE, payload TEXT NOT NULL, dead TEXT, created REAL NOT NULL);"
        )
        now = time.time()
        db.execute(
            "INSERT INTO outbox (kind, key, payload, dead, created) VALUES (?, ?, ?, ?, ?)",
            ("rating", "k1", "{}", "422: bad", now),
        )
        db.execute(
            "INSERT INTO outbox (kind, key, payload, created) VALUES (?, ?, ?, ?)",
            ("rating", "k2", rating().model_dump_json(), now),
        )
    db.close()
    box = Outbox(path)
    assert box.pending() == 1
    [aside] = box.set_aside()
    assert (aside.key, aside.reason, round(aside.set_aside_at)) == ("k1", "422: bad", round(now))
    box.stop()


# --- in process, against an in-memory transport that fails on demand --------------------------


class FlakyStore:
    """An in-memory store behind httpx.MockTransport: ``mode`` ok / down / garbage / reject."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.rows: dict[str, set[str]] = {"completions": set(), "events": set(), "ratings": set()}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "down":
            raise httpx.ConnectError("refused")
        if self.mode == "garbage":
            return httpx.Response(500, text="<html>oops")
        kind = request.url.path.rsplit("/", 1)[-1]
        if kind == "me":
            return httpx.Response(200, json={"annotator": "a", "scopes": ["annotator"]})
        body = json.loads(request.content)[kind]
        if self.mode == "reject" and any(r.get("line") == 13 for r in body):
            return httpx.Response(422, json={"detail": "line 13 is unlucky"})
        keys = {r.get("event_id") or r.get("id") for r in body}
        new = keys - self.rows[kind]
        self.rows[kind] |= keys
        return httpx.Response(200, json={"stored": len(new), "duplicates": len(keys) - len(new)})


def test_outbox_keeps_rows_through_outages_and_restarts(tmp_path: Path) -> None:
    store = FlakyStore()
    client = StoreClient("http://store", "t", transport=httpx.MockTransport(store))
    box = Outbox(tmp_path / "o.sqlite3")
    box.set_client(client)
    completion = CompletionIn(id=uuid.uuid4(), prompt="p", text="t", model="m")
    box.put_completion(completion)
    box.put_completion(completion)  # the same id twice is one row
    box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=completion.id, kind="accepted"))
    box.put_rating(rating())
    assert box.pending() == 3
    for mode in ("down", "garbage"):
        store.mode = mode
        with pytest.raises(Exception, match="store|HTTP|refused"):
            box.flush()
        assert box.pending() == 3
    box._db.close()
    box = Outbox(tmp_path / "o.sqlite3")  # a restart: the rows are still there
    box.set_client(client)
    store.mode = "ok"
    assert box.flush() == 3 and box.pending() == 0
    assert {k: len(v) for k, v in store.rows.items()} == {
        "completions": 1,
        "events": 1,
        "ratings": 1,
    }


def test_outbox_isolates_rejected_rows_and_is_bounded(tmp_path: Path) -> None:
    store = FlakyStore()
    store.mode = "reject"
    warnings: list[str] = []
    box = Outbox(tmp_path / "o.sqlite3", max_rows=6, warn=warnings.append)
    box.set_client(StoreClient("http://store", "t", transport=httpx.MockTransport(store)))
    for line in (1, 13, 2, 3):
        box.put_rating(rating(line))
    assert box.flush() == 3
    [aside] = box.set_aside()
    assert box.pending() == 0 and "unlucky" in aside.reason
    box.set_client(None)
    for _ in range(6):
        box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=uuid.uuid4(), kind="shown"))
    with pytest.raises(OutboxFull, match="outbox full"):
        box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=uuid.uuid4(), kind="shown"))
    box.put_rating(rating())  # ratings still fit, up to twice the bound
    assert any("outbox full" in w for w in warnings)


def test_outbox_thread_backs_off_and_recovers(tmp_path: Path) -> None:
    store = FlakyStore()
    store.mode = "down"
    changes = threading.Event()
    box = Outbox(tmp_path / "o.sqlite3", base_delay=0.05, max_delay=0.2, on_change=changes.set)
    box.set_client(StoreClient("http://store", "t", transport=httpx.MockTransport(store)))
    box.start()
    try:
        box.put_rating(rating())
        for _ in range(200):
            if box.reachable is False:
                break
            time.sleep(0.05)
        assert box.reachable is False and box.pending() == 1
        store.mode = "ok"
        for _ in range(200):
            if box.pending() == 0:
                break
            time.sleep(0.05)
        assert box.pending() == 0
        for _ in range(200):
            if box.reachable:
                break
            time.sleep(0.05)
        assert box.reachable is True
    finally:
        box.stop()


# --- against a real store: rows queued while a flush runs ----------------------------------


class _Meanwhile(httpx.HTTPTransport):
    """A real HTTP transport that, while the first batch of completions is on its way,
    runs ``during``: the language server's thread queues rows at any moment."""

    def __init__(self, during: Any) -> None:
        super().__init__()
        self.during = during

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/completions") and self.during is not None:
            during, self.during = self.during, None
            during()
        return super().handle_request(request)


def test_an_event_queued_during_a_flush_waits_for_its_completion(
    tmp_path: Path, live_store: Any
) -> None:
    """A completion and its event queued while a flush sends completions: the flush's event
    batch must not take the event before its completion reached the store (the store
    refuses it, 422 "unknown completion", and the event was set aside: an accept lost)."""
    warnings: list[str] = []
    box = Outbox(tmp_path / "o.sqlite3", warn=warnings.append)
    first = CompletionIn(id=uuid.uuid4(), prompt="p", text="a = 1", model="m")
    box.put_completion(first)
    box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=first.id, kind="accepted"))
    later = CompletionIn(id=uuid.uuid4(), prompt="p", text="b = 2", model="m")

    def meanwhile() -> None:
        box.put_completion(later)
        box.put_event(EventIn(event_id=uuid.uuid4(), completion_id=later.id, kind="dismissed"))

    box.set_client(live_store.client(transport=_Meanwhile(meanwhile)))
    box.flush()
    box.flush()
    assert (box.set_aside_count(), box.pending(), warnings) == (0, 0, [])
    with sqlite3.connect(live_store.database_url.removeprefix("sqlite:///")) as db:
        kinds = dict(db.execute("SELECT completion_id, kind FROM completion_events").fetchall())
    assert sorted(kinds.values()) == ["accepted", "dismissed"]
