"""Fault injection with real processes (issue 14): nothing acknowledged is lost, nothing
held is lost, nothing arrives twice, and nobody has to step in.

Each test breaks one thing under load and then checks the same three invariants:

1. every rating a client was told was stored (HTTP 200) is in the trainer's export exactly
   once (ratings are keyed here by ``(completion, line)``: every rating of a test rates a
   line of its own);
2. every rating a client still holds (an unacknowledged batch, the language server's
   outbox) arrives once the store is back, exactly once: the store deduplicates by
   ``event_id``, so a batch stored whose answer was lost comes back as duplicates;
3. no component needed a manual step beyond the fault's own end (a killed store is
   started again, a lifted limit is lifted by a restart).

The faults: ``crlhf-store serve`` killed with SIGKILL in the middle of 32 clients' batches
(SQLite and PostgreSQL); PostgreSQL's connections dropped with ``pg_terminate_backend``
mid-batch; a proxy answering one crlhf-lsp 401, then 503, then a lost reply, then the
store's answers; a file-size limit (RLIMIT_FSIZE) filling the store's SQLite file; an
outbox killed mid-write, torn and truncated.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from conftest import LiveStore, start_live_store
from crlhf_contract.schemas import RatingIn
from crlhf_store.process import serve_command, wait_ready
from lsp_harness import command, lsp_session, request, wait_until
from store_helpers import completion, rating

# Each test breaks a real store or outbox under load and waits for it to heal: 4-17 s
# apiece, about a minute in all; make test runs them, make check leaves them out.
pytestmark = pytest.mark.slow

Key = tuple[str, int]
NO_LIMITS = {"rating_rate_per_minute": "0", "rating_quota_per_day": "0"}


# --- a crowd of clients posting rating batches -----------------------------------------------


@dataclass
class Crowd:
    """``clients`` clients, each with a completion of its own and ``batches`` batches of
    ``size`` ratings on distinct lines of it. Records what the store answered to each."""

    url: str
    token: str
    batches: list[list[list[dict[str, Any]]]]
    acks: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)
    first_try_acks: set[tuple[int, int]] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, store: LiveStore, clients: int, batches: int, size: int) -> Crowd:
        text = "".join(f"x{i} = {i}\n" for i in range(batches * size))
        cs = [completion(text=text) for _ in range(clients)]
        answer = httpx.post(
            f"{store.url}/v1/completions",
            json={"completions": cs},
            headers={"Authorization": f"Bearer {store.annotator_token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        plan = [
            [
                [rating(c["id"], b * size + j, 1 if (b + j) % 3 else -1) for j in range(size)]
                for b in range(batches)
            ]
            for c in cs
        ]
        return cls(store.url, store.annotator_token, plan)

    @property
    def everything(self) -> set[Key]:
        return {_key(r) for client in self.batches for batch in client for r in batch}

    def acked(self) -> set[Key]:
        with self.lock:
            done = list(self.acks)
        return {_key(r) for c, b in done for r in self.batches[c][b]}

    def unacked(self) -> list[tuple[int, int]]:
        with self.lock:
            return [
                (c, b)
                for c, client in enumerate(self.batches)
                for b in range(len(client))
                if (c, b) not in self.acks
            ]

    def run(self, *, until: float | None) -> None:
        """Every client posts its unacknowledged batches in order. ``until`` None: a client
        stops at its first failure; else it retries each batch until acknowledged or the
        (monotonic) deadline passes."""
        with ThreadPoolExecutor(len(self.batches)) as pool:
            list(pool.map(lambda c: self._client(c, until), range(len(self.batches))))

    def _client(self, c: int, until: float | None) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as http:
            for b, batch in enumerate(self.batches[c]):
                first = True
                while (c, b) not in self.acks:
                    outcome, body = _post_ratings(http, batch)
                    with self.lock:
                        self.outcomes[outcome] += 1
                        if body is not None:
                            self.acks[(c, b)] = body
                            if first:
                                self.first_try_acks.add((c, b))
                    if body is not None:
                        break
                    if until is None or time.monotonic() > until:
                        return
                    first = False
                    time.sleep(0.05 + random.random() * 0.1)


def _post_ratings(http: httpx.Client, batch: list[dict[str, Any]]) -> tuple[str, Any]:
    """(what happened, the body of a 200 or None)."""
    try:
        answer = http.post("/v1/ratings", json={"ratings": batch})
    except httpx.ConnectError:
        return "refused", None  # nothing was sent
    except httpx.TransportError as exc:  # sent, the answer never came: cut mid-request
        return f"cut:{type(exc).__name__}", None
    if answer.status_code == 200:
        return "200", answer.json()
    return str(answer.status_code), None


def _key(r: dict[str, Any]) -> Key:
    return (str(r["completion_id"]), int(r["line"]))


def _exported(store: LiveStore) -> Counter[Key]:
    """Every line rating in the trainer's export, counted by (completion, line)."""
    with store.client(store.trainer_token) as trainer:
        return Counter(
            (str(x.completion_id), x.line)
            for page in trainer.iter_label_pages()
            for x in page.labels
        )


def _check_export(store: LiveStore, acked: set[Key], sent: set[Key]) -> Counter[Key]:
    """Invariant 1: the acknowledged are there once each; nothing there was never sent."""
    exported = _exported(store)
    assert acked <= set(exported), f"{len(acked - set(exported))} acknowledged ratings lost"
    assert set(exported) <= sent, "the export holds ratings nobody sent"
    repeated = {k: n for k, n in exported.items() if n > 1}
    assert not repeated, f"{len(repeated)} ratings exported more than once"
    return exported


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


# --- 1. the store killed with SIGKILL mid-batch ----------------------------------------------


def test_a_store_killed_mid_batch_loses_nothing_it_acknowledged(
    db_url: str, tmp_path: Path
) -> None:
    store = start_live_store(tmp_path / "store", db_url, **NO_LIMITS)
    try:
        crowd = Crowd.of(store, clients=32, batches=10, size=20)
        posting = threading.Thread(target=crowd.run, kwargs={"until": None})
        posting.start()
        _wait_for(lambda: len(crowd.acks) >= 48, 60, "48 batches acknowledged")
        assert store.process is not None
        store.process.kill()  # SIGKILL: no shutdown, no flush, no goodbye
        store.process.wait()
        posting.join(60)
        assert not posting.is_alive()
        held = crowd.unacked()
        assert held, "every batch went through before the kill: no fault injected"
        cut = sum(n for outcome, n in crowd.outcomes.items() if outcome.startswith("cut:"))
        assert cut >= 1, f"no request was in flight at the kill: {crowd.outcomes}"
        assert all(o in ("200", "refused") or o.startswith("cut:") for o in crowd.outcomes)
        # Each batch has fresh event ids: its first acknowledgement stored all of it.
        assert all(a == {"stored": 20, "duplicates": 0} for a in crowd.acks.values())

        store.start()  # same data dir, same database, same port
        acked = crowd.acked()
        exported = _check_export(store, acked, crowd.everything)
        committed_unacked = len(exported) - len(acked)  # stored, but the answer was lost

        # The clients send what they still hold; the store takes each rating once.
        crowd.run(until=time.monotonic() + 60)
        assert crowd.unacked() == []
        retried = [crowd.acks[cb] for cb in held]
        assert sum(a["stored"] for a in retried) == 20 * len(held) - committed_unacked
        assert sum(a["duplicates"] for a in retried) == committed_unacked
        exported = _check_export(store, crowd.acked(), crowd.everything)
        assert set(exported) == crowd.everything and len(exported) == 32 * 10 * 20
    finally:
        store.stop()


# --- 2. PostgreSQL's connections dropped mid-batch -------------------------------------------


def _terminate(admin_url: str, application: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def test_dropped_postgresql_connections_lose_nothing_and_heal_by_themselves(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    application = f"crlhf-faults-{uuid.uuid4().hex[:8]}"
    url = f"{fresh_pg_url}&application_name={application}"
    admin_url = fresh_pg_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
    store = start_live_store(tmp_path / "store", url, **NO_LIMITS)
    try:
        pid = store.process.pid if store.process else None
        crowd = Crowd.of(store, clients=32, batches=8, size=20)
        posting = threading.Thread(target=crowd.run, kwargs={"until": time.monotonic() + 90})
        posting.start()
        killed = 0
        _wait_for(lambda: len(crowd.acks) >= 16, 60, "16 batches acknowledged")
        # Drop every connection of the store, again and again, while the batches go in.
        for _ in range(15):
            killed += _terminate(admin_url, application)
            time.sleep(0.15)
        posting.join(120)
        assert not posting.is_alive()
        assert killed > 0, "no connection of the store was there to drop"
        # Mid-batch: a request whose connection died answered 503, never a 500, never a lie.
        assert crowd.outcomes["503"] >= 1, crowd.outcomes
        assert set(crowd.outcomes) <= {"200", "503"}, crowd.outcomes
        assert crowd.unacked() == []
        for cb in crowd.first_try_acks:  # a batch that never failed was stored whole
            assert crowd.acks[cb] == {"stored": 20, "duplicates": 0}
        exported = _check_export(store, crowd.acked(), crowd.everything)
        assert set(exported) == crowd.everything

        # Every pooled connection is dead now: the very next request still succeeds (the
        # pool checks a connection before handing it out), with no restart.
        assert _terminate(admin_url, application) >= 1
        for token in (store.annotator_token, store.trainer_token):
            me = httpx.get(
                f"{store.url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            assert me.status_code == 200, me.text
        assert store.process is not None and store.process.pid == pid
        assert store.process.poll() is None
    finally:
        store.stop()


# --- 3. 401, then 503, then a lost answer, then the store, to one language server ------------


class Front:
    """A small HTTP front on loopback for the real store (a proxy, a load balancer being
    reconfigured): ``mode`` is ``401``, ``503``, ``lost`` (forward one ratings batch to
    the store, answer 503 anyway, then forward) or ``forward``."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.mode = "401"
        self.seen: Counter[tuple[str, str]] = Counter()  # (mode, path)
        self.forwarded: list[tuple[str, int, Any]] = []
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = front.handle(self.command, self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        with self.lock:
            mode = self.mode
            self.seen[(mode, path)] += 1
            if mode == "lost" and path == "/v1/ratings":
                self.mode = "forward"  # this batch reaches the store; its answer does not
        if mode == "401":
            return 401, {"detail": "unknown or revoked token"}
        if mode == "503" or (mode == "lost" and path != "/v1/ratings"):
            return 503, {"detail": "upstream is being upgraded"}
        keep = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type")}
        answer = httpx.request(method, self.store_url + path, headers=keep, content=body)
        with self.lock:
            self.forwarded.append((path, answer.status_code, answer.json()))
        if mode == "lost":
            return 503, {"detail": "upstream timed out"}
        return answer.status_code, answer.json()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _post_completions(live_store: LiveStore, n: int) -> list[str]:
    cs = [completion(text="a = 1\nb = 2\n") for _ in range(n)]
    with httpx.Client(timeout=60) as http:
        answer = http.post(
            f"{live_store.url}/v1/completions",
            json={"completions": cs},
            headers={"Authorization": f"Bearer {live_store.annotator_token}"},
        )
    assert answer.status_code == 200, answer.text
    return [c["id"] for c in cs]


def _lsp_settings(tmp_path: Path, store_url: str, token: str) -> dict[str, Any]:
    return {
        "backend": "openai",  # pointed nowhere: no model is loaded, ratings need none
        "openaiUrl": "http://127.0.0.1:9",
        "outboxPath": str(tmp_path / "lsp" / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
        "storeUrl": store_url,
        "token": token,
    }


async def _status(client: Any) -> dict[str, Any]:
    return await request(client, "crlhf/status")  # type: ignore[no-any-return]


async def test_401_then_503_then_a_lost_answer_then_200_every_rating_arrives_once(
    tmp_path: Path, live_store: LiveStore
) -> None:
    ids = _post_completions(live_store, 48)
    front = Front(live_store.url)
    try:
        settings = _lsp_settings(tmp_path, front.url, live_store.annotator_token)
        async with lsp_session(settings) as client:
            # 401 from the front: the store seems to refuse the token. Nothing is set aside.
            for cid in ids[:24]:
                assert (await command(client, "crlhf.rate", cid, 0, 1))["rated"] == 1
            status = await wait_until(
                lambda: _refused_ratings(client, front, "401", "token refused"), timeout=30
            )
            assert (status["outboxPending"], status["outboxSetAside"]) == (24, 0)

            # 503: unavailable. Still nothing set aside; the status says why.
            front.mode = "503"
            for cid in ids[24:40]:
                await command(client, "crlhf.rate", cid, 1, -1)
            status = await wait_until(
                lambda: _refused_ratings(client, front, "503", "the store failed (HTTP 503)"),
                timeout=30,
            )
            assert (status["outboxPending"], status["outboxSetAside"]) == (40, 0)
            for cid in ids[40:]:
                await command(client, "crlhf.rate", cid, 0, -1)

            # A batch reaches the store but its answer is lost; then the store answers.
            front.mode = "lost"
            status = await wait_until(
                lambda: _when(client, outboxPending=0, storeReachable=True), timeout=60
            )
            assert status["outboxSetAside"] == 0 and status["storeProblem"] is None
            assert await command(client, "crlhf.setAside") == []
            # Backing off, not one request per rating given during the outage (was 36-45).
            refused = front.seen[("401", "/v1/ratings")] + front.seen[("503", "/v1/ratings")]
            assert refused <= 8, front.seen
            told = [m.message for m in client.messages if "token refused" in m.message]
            assert len(told) == 1, told  # the user is told once, not per retry
        ratings = [(p, s, body) for p, s, body in front.forwarded if p == "/v1/ratings"]
        assert [s for _, s, _ in ratings] == [200, 200]
        (_, _, lost), (_, _, resent) = ratings
        assert lost == {"stored": 48, "duplicates": 0}
        assert resent == {"stored": 0, "duplicates": 48}  # the retry of what was stored
        expected = {(cid, 0) for cid in ids[:24] + ids[40:]} | {(cid, 1) for cid in ids[24:40]}
        exported = _exported(live_store)
        assert set(exported) == expected and set(exported.values()) == {1}
    finally:
        front.close()


async def _when(client: Any, **expected: Any) -> dict[str, Any] | None:
    status = await _status(client)
    return status if all(status[k] == v for k, v in expected.items()) else None


async def _refused_ratings(
    client: Any, front: Front, mode: str, problem: str
) -> dict[str, Any] | None:
    """The status once a ratings batch met ``mode`` and the status tells ``problem``."""
    if not front.seen[(mode, "/v1/ratings")]:
        return None
    status = await _status(client)
    if status["storeReachable"] is False and (status["storeProblem"] or "").startswith(problem):
        return status
    return None


# --- 4. a full disk under the store's SQLite file --------------------------------------------


def _start_with_file_size_limit(store: LiveStore, limit: int) -> None:
    """``store.start()`` with RLIMIT_FSIZE: no file of the process may grow past ``limit``
    bytes, as on a full disk (Python ignores SIGXFSZ: a write past it fails with EFBIG)."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    log = open(store.data_dir / "server.log", "ab")  # noqa: SIM115
    cmd = serve_command(port=store.port, data_dir=store.data_dir, database_url=store.database_url)
    store.process = subprocess.Popen(  # noqa: S603 - our own command line
        cmd, stdout=log, stderr=subprocess.STDOUT, env=store.env, preexec_fn=limit_files
    )
    log.close()
    wait_ready(store.process, store.url, timeout=60, poll=0.1, log=lambda: f":\n{store.log()}")


def test_a_full_disk_answers_5xx_loses_nothing_and_heals_after_a_restart(tmp_path: Path) -> None:
    store = start_live_store(tmp_path / "store", None, **NO_LIMITS)
    try:
        crowd = Crowd.of(store, clients=4, batches=40, size=25)
        store.stop()  # checkpoints the WAL: the database file holds everything so far
        db = store.data_dir / "store.db"
        _start_with_file_size_limit(store, db.stat().st_size + 128 * 1024)

        crowd.run(until=None)  # each client posts until the store refuses it
        assert store.process is not None and store.process.poll() is None, store.log()
        assert crowd.acks, "the store took nothing: the limit left no room at all"
        held = crowd.unacked()
        assert len(held) >= 4, "the disk never filled up"
        refusals = {o: n for o, n in crowd.outcomes.items() if o != "200"}
        assert set(refusals) <= {"503", "507"}, refusals  # a 5xx, never a 200 for a lost batch
        # Still full: a retry is refused again, and the store stays up for reads.
        with httpx.Client(base_url=store.url, timeout=30) as http:
            http.headers["Authorization"] = f"Bearer {store.annotator_token}"
            c, b = held[0]
            assert _post_ratings(http, crowd.batches[c][b])[0] in ("503", "507")
            assert http.get("/v1/me").status_code == 200

        store.restart()  # the space is back (no limit): nothing else is done by hand
        _check_export(store, crowd.acked(), crowd.everything)
        crowd.run(until=time.monotonic() + 60)
        assert crowd.unacked() == []
        exported = _check_export(store, crowd.acked(), crowd.everything)
        assert set(exported) == crowd.everything
    finally:
        store.stop()


# --- 5. the outbox killed mid-write, torn, truncated -----------------------------------------


class _Killed(Exception):
    """Leaves an lsp_session whose server was killed (no polite shutdown to wait for)."""


def _held_ratings(outbox: Path, tmp_path: Path) -> set[Key]:
    """The ratings an outbox file (with its -wal) holds, read from a copy with sqlite3, as
    SQLite itself recovers it: the file under test is not touched."""
    copy = tmp_path / f"copy-{uuid.uuid4().hex[:6]}"
    copy.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{outbox}{suffix}").exists():
            shutil.copy(f"{outbox}{suffix}", copy / f"o.sqlite3{suffix}")
    db = sqlite3.connect(copy / "o.sqlite3")
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").fetchall():
            return set()  # torn before its schema: an empty file, a fresh outbox
        rows = db.execute("SELECT payload FROM outbox WHERE kind = 'rating' AND dead IS NULL")
        return {_key(json.loads(payload)) for (payload,) in rows}
    finally:
        db.close()


def _labels_of(store: LiveStore, ids: list[str]) -> Counter[Key]:
    wanted = set(ids)
    return Counter({k: n for k, n in _exported(store).items() if k[0] in wanted})


async def test_an_outbox_killed_mid_write_and_torn_sends_every_rating_it_holds_once(
    tmp_path: Path, live_store: LiveStore
) -> None:
    ids = _post_completions(live_store, 300)
    live_store.stop()  # the store is down: every rating stays in the outbox
    settings = _lsp_settings(tmp_path, live_store.url, live_store.annotator_token)
    outbox = Path(settings["outboxPath"])
    acknowledged: set[Key] = set()
    with contextlib.suppress(_Killed):
        async with lsp_session(settings) as client:
            rated = [(cid, line) for cid in ids for line in (0, 1)]
            pending = [
                asyncio.ensure_future(command(client, "crlhf.rate", cid, line, 1))
                for cid, line in rated
            ]
            for key, task in zip(rated[:300], pending[:300], strict=True):
                assert (await task)["rated"] == 1
                acknowledged.add(key)
            server = client._server
            assert server is not None
            server.kill()  # SIGKILL while rate commands are still arriving and being written
            await server.wait()
            for task in pending:
                task.cancel()
            raise _Killed
    held = _held_ratings(outbox, tmp_path)
    assert acknowledged <= held, f"{len(acknowledged - held)} acknowledged ratings lost"

    # A torn write: the WAL loses its tail at a random offset. SQLite keeps the intact
    # prefix; that is what the outbox still holds, and all of it must arrive.
    wal = Path(f"{outbox}-wal")
    assert wal.exists() and wal.stat().st_size > 32
    seed = random.randrange(1 << 30)
    cut = random.Random(seed).randrange(32, wal.stat().st_size)
    with wal.open("r+b") as f:
        f.truncate(cut)
    held = _held_ratings(outbox, tmp_path)

    await asyncio.to_thread(live_store.start)
    async with lsp_session(settings) as client:
        await wait_until(lambda: _when(client, outboxPending=0, storeReachable=True), timeout=60)
        assert (await _status(client))["outboxSetAside"] == 0
    assert not [p for p in outbox.parent.iterdir() if ".corrupt-" in p.name]  # not damage
    labels = _labels_of(live_store, ids)
    assert set(labels) == held and set(labels.values()) == {1}, f"seed {seed}"


async def _rate_while_the_store_is_down(
    tmp_path: Path, live_store: LiveStore, ids: list[str]
) -> tuple[dict[str, Any], Path]:
    """crlhf-lsp rates line 0 of each of ``ids`` with the store stopped, then shuts down:
    the outbox file holds them all (its WAL checkpointed into it)."""
    live_store.stop()
    settings = _lsp_settings(tmp_path, live_store.url, live_store.annotator_token)
    outbox = Path(settings["outboxPath"])
    async with lsp_session(settings) as client:
        for cid in ids:
            await command(client, "crlhf.rate", cid, 0, 1)
        assert (await _status(client))["outboxPending"] == len(ids)
    wal = Path(f"{outbox}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    return settings, outbox


async def test_an_outbox_truncated_at_a_random_offset_is_moved_aside_and_work_goes_on(
    tmp_path: Path, live_store: LiveStore
) -> None:
    ids = _post_completions(live_store, 201)
    settings, outbox = await _rate_while_the_store_is_down(tmp_path, live_store, ids[:200])
    size, page = outbox.stat().st_size, 4096
    assert size >= 4 * page, "the outbox is too small to truncate meaningfully"
    seed = random.randrange(1 << 30)
    cut = random.Random(seed).randrange(100, size - page)
    if cut % page == 0:
        cut += 1  # a whole number of pages can read as a smaller valid file; cut mid-page
    with outbox.open("r+b") as f:
        f.truncate(cut)
    before = time.time()

    await asyncio.to_thread(live_store.start)
    async with lsp_session(settings) as client:  # it starts: initialize did not fail
        await wait_until(lambda: any("moved to" in m.message for m in client.messages), timeout=30)
        [aside] = [
            p for p in outbox.parent.iterdir() if p.name.startswith("outbox.sqlite3.corrupt-")
        ]
        stamp = aside.name.removeprefix("outbox.sqlite3.corrupt-")
        moved_at = calendar.timegm(time.strptime(stamp[:16], "%Y%m%dT%H%M%SZ"))
        assert before - 1 <= moved_at <= time.time(), f"seed {seed}: {stamp}"
        assert aside.stat().st_size == cut  # kept as it was, for sqlite3's .recover
        # The fresh outbox works: a rating given now reaches the store, once.
        assert (await command(client, "crlhf.rate", ids[200], 0, -1))["rated"] == 1
        await wait_until(lambda: _when(client, outboxPending=0, storeReachable=True), timeout=30)
    assert _labels_of(live_store, ids) == Counter({(ids[200], 0): 1}), f"seed {seed}"


def _readable_ratings(outbox: Path, tmp_path: Path) -> tuple[set[Key], int]:
    """(the ratings of an outbox file that read back whole, how many do not)."""
    copy = tmp_path / f"copy-{uuid.uuid4().hex[:6]}.sqlite3"
    shutil.copy(outbox, copy)
    db = sqlite3.connect(copy)
    try:
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        readable, damaged = set(), 0
        for (payload,) in db.execute("SELECT payload FROM outbox WHERE dead IS NULL"):
            try:
                readable.add(_key(RatingIn.model_validate(json.loads(payload)).model_dump()))
            except ValueError:
                damaged += 1
        return readable, damaged
    finally:
        db.close()


async def test_an_outbox_torn_at_its_end_sends_every_readable_rating_and_sets_aside_the_rest(
    tmp_path: Path, live_store: LiveStore
) -> None:
    """The end of the last page lost (a write cut short): SQLite still reads the file and
    ``quick_check`` passes, but a row's payload is zeros. That row must not hold up the
    rest (before: every flush failed on it, for ever, and every later rating behind it)."""
    ids = _post_completions(live_store, 200)
    settings, outbox = await _rate_while_the_store_is_down(tmp_path, live_store, ids)
    with outbox.open("r+b") as f:
        f.truncate(outbox.stat().st_size - 100)
    readable, damaged = _readable_ratings(outbox, tmp_path)
    assert damaged >= 1, "the cut no longer hits a row (the file's layout changed): cut more"

    await asyncio.to_thread(live_store.start)
    async with lsp_session(settings) as client:
        status = await wait_until(
            lambda: _when(client, outboxPending=0, storeReachable=True), timeout=30
        )
        assert status["outboxSetAside"] == damaged
        aside = await command(client, "crlhf.setAside")
        assert [a["reason"].startswith("unreadable") for a in aside] == [True] * damaged
    assert not [p for p in outbox.parent.iterdir() if ".corrupt-" in p.name]
    labels = _labels_of(live_store, ids)
    assert set(labels) == readable and set(labels.values()) == {1}
