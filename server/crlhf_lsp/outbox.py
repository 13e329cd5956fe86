"""The durable outbox: every completion, event and rating waits here until the store has it.

Rows live in an SQLite file (WAL), so nothing is lost when the store is down or crlhf-lsp
restarts; a flusher thread sends them in batches of at most ``BATCH`` per kind, completions
first (events and ratings refer to them). Each row carries its idempotency key (the
completion ``id`` or the ``event_id``): a batch the store stored but whose reply was lost is
sent again and counted as duplicates, never stored twice.

Failures:

- the store is unreachable or answers 5xx/garbage: the batch waits ``backoff`` seconds,
  doubling from ``base_delay`` up to ``max_delay``;
- the store rejects a batch (4xx): it is split to find the rejected rows, which are kept in
  the file as ``dead`` (with the reason), never retried, never silently dropped.

The outbox is bounded (``max_rows`` pending): when full, completions and events are refused
and a warning names the file and the store; ratings are still accepted up to twice the
bound, as they are the user's explicit work.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from crlhf_contract.client import StoreClient, StoreRejected, StoreUnavailable
from crlhf_contract.schemas import CompletionIn, EventIn, RatingIn

from crlhf_lsp.errors import OutboxFull

Kind = Literal["completion", "event", "rating"]
KINDS: tuple[Kind, ...] = ("completion", "event", "rating")
BATCH = 200
log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    dead TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (dead, kind, id);
"""


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int = 50_000,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        on_change: Callable[[], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.base_delay, self.max_delay = base_delay, max_delay
        self.on_change = on_change or (lambda: None)
        self.warn = warn or (lambda message: None)
        self.client: StoreClient | None = None
        self.reachable: bool | None = None
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._delay = 0.0
        self._full_warned = False
        self._thread: threading.Thread | None = None

    # --- producer side ----------------------------------------------------------------

    def put_completion(self, completion: CompletionIn) -> None:
        self._put("completion", str(completion.id), completion.model_dump_json())

    def put_event(self, event: EventIn) -> None:
        self._put("event", str(event.event_id), event.model_dump_json())

    def put_rating(self, rating: RatingIn) -> None:
        self._put("rating", str(rating.event_id), rating.model_dump_json())

    def _put(self, kind: Kind, key: str, payload: str) -> None:
        with self._lock:
            pending = self._count()
            limit = self.max_rows * 2 if kind == "rating" else self.max_rows
            if pending >= limit:
                message = (
                    f"crlhf outbox full: {pending} rows wait in {self.path} because the store "
                    f"{self._store_name()} has not taken them; new {kind}s are dropped until it "
                    "is reachable again (check storeUrl and token)"
                )
                if not self._full_warned:
                    self._full_warned = True
                    self.warn(message)
                raise OutboxFull(message)
            self._full_warned = False
            self._db.execute(
                "INSERT OR IGNORE INTO outbox (kind, key, payload, created) VALUES (?, ?, ?, ?)",
                (kind, key, payload, time.time()),
            )
        self._wake.set()
        self.on_change()

    def pending(self) -> int:
        with self._lock:
            return self._count()

    def dead(self) -> list[tuple[str, str, str]]:
        """(kind, key, reason) of the rows the store rejected."""
        with self._lock:
            rows = self._db.execute("SELECT kind, key, dead FROM outbox WHERE dead IS NOT NULL")
            return list(rows)

    def _count(self) -> int:
        return self._db.execute("SELECT count(*) FROM outbox WHERE dead IS NULL").fetchone()[0]

    def _store_name(self) -> str:
        return str(self.client._http.base_url) if self.client is not None else "(none set)"

    # --- flusher ----------------------------------------------------------------------

    def set_client(self, client: StoreClient | None) -> None:
        old, self.client = self.client, client
        self._delay = 0.0
        self._wake.set()
        if old is not None and old is not client:
            old.close()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="crlhf-outbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._db.close()

    def wake(self) -> None:
        self._delay = 0.0
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._delay or 30.0)
            self._wake.clear()
            if self._stop.is_set() or self.client is None:
                continue
            try:
                sent = self.flush()
            except Exception as exc:  # StoreUnavailable, or anything odd: never die
                if not isinstance(exc, StoreUnavailable):
                    log.exception("outbox flush failed")
                self._set_reachable(False)
                self._delay = min(self.max_delay, max(self.base_delay, self._delay * 2))
                continue
            self._delay = 0.0
            if sent:
                self._set_reachable(True)
                self._wake.set()  # more may be waiting
            elif self.pending() == 0:
                self._set_reachable(self._healthy())

    def _healthy(self) -> bool:
        """``/healthz`` when there is nothing to send, so the status still knows the store."""
        client = self.client
        try:
            return client is not None and client.healthy()
        except Exception:  # a transport failing in an unexpected way is still "down"
            return False

    def flush(self) -> int:
        """Send one batch per kind; the number of rows the store took (new or duplicate)."""
        client = self.client
        if client is None:
            return 0
        sent = 0
        for kind in KINDS:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, payload FROM outbox WHERE dead IS NULL AND kind = ? "
                    "ORDER BY id LIMIT ?",
                    (kind, BATCH),
                ).fetchall()
            if rows:
                sent += self._send(client, kind, rows)
        if sent:
            self.on_change()
        return sent

    def _send(self, client: StoreClient, kind: Kind, rows: list[tuple[int, str]]) -> int:
        try:
            _post(client, kind, [payload for _, payload in rows])
        except StoreRejected as exc:
            if len(rows) == 1:
                self._mark_dead(rows[0][0], f"{exc.status}: {exc.detail}")
                return 0
            half = len(rows) // 2
            return self._send(client, kind, rows[:half]) + self._send(client, kind, rows[half:])
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i, _ in rows])
        return len(rows)

    def _mark_dead(self, row_id: int, reason: str) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET dead = ? WHERE id = ?", (reason[:2000], row_id))
        self.warn(f"crlhf: the store rejected an outbox row ({reason}); it is kept in {self.path}")

    def _set_reachable(self, reachable: bool) -> None:
        if reachable != self.reachable:
            self.reachable = reachable
            self.on_change()


def _post(client: StoreClient, kind: Kind, payloads: list[str]) -> None:
    rows = [json.loads(p) for p in payloads]
    if kind == "completion":
        client.post_completions([CompletionIn.model_validate(r) for r in rows])
    elif kind == "event":
        client.post_events([EventIn.model_validate(r) for r in rows])
    else:
        client.post_ratings([RatingIn.model_validate(r) for r in rows])
