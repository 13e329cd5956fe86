"""The durable outbox: every completion, event and rating waits here until the store has it.

Rows live in an SQLite file (WAL), so nothing is lost when the store is down or crlhf-lsp
restarts; a flusher thread sends them in batches of at most ``BATCH`` per kind, completions
first (events and ratings refer to them). Each row carries its idempotency key (the
completion ``id`` or the ``event_id``): a batch the store stored but whose reply was lost is
sent again and counted as duplicates, never stored twice.

Failures, and what happens to the rows:

- the store cannot take anything now: unreachable, 5xx, garbage, or a 4xx that judges the
  sender rather than the rows (401 token refused, 403, 404, 408, 429, from the store or a
  proxy in front of it). Every row stays queued; the batch waits ``backoff`` seconds,
  doubling from ``base_delay`` up to ``max_delay`` (or the server's ``Retry-After``; new
  rows wait with it rather than waking the flusher), and
  :attr:`Outbox.problem` says why (the status's ``storeProblem``; the user is told once per
  problem). A new client (the token or URL changed) is tried at once.
- the store rejects rows *as rows* (422, 409, 413): the rows it names (the 422 ``loc`` or
  the ``kind[i]`` of a 409) are set aside; when it names none, the batch is split until the
  rejected rows are alone. A set-aside row stays in the file with its reason, is never
  retried by itself, and :meth:`Outbox.requeue` (command ``crlhf.requeue``) queues it again.
- a row whose payload no longer reads back (a file torn at its end can still pass SQLite's
  checks) is set aside as unreadable, so it never holds up the rows behind it.

Set-aside rows are kept ``SET_ASIDE_DAYS`` days after they were set aside, at most
``SET_ASIDE_CAP`` of them (the oldest go first): a store that rejects a row today will
most likely reject it tomorrow, and an outbox must not grow without bound.

The outbox is bounded (``max_rows`` pending): when full, completions and events are refused
and a warning names the file and the store; ratings are still accepted up to twice the
bound, as they are the user's explicit work.

The file and its folder are private to the user (0600 / 0700 when created here): they hold
the code around every completion. A file SQLite cannot read (truncated, overwritten) is
moved aside as ``<name>.corrupt-<UTC time>`` and a fresh outbox is started, with a warning
(:mod:`crlhf_lsp.outbox_file`). The HTTP side, the kinds of rows and the reading of the
store's answers are in :mod:`crlhf_lsp.outbox_send`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crlhf_contract.client import StoreClient, StoreError, StoreRejected
from crlhf_contract.schemas import CompletionIn, EventIn, RatingIn

from crlhf_lsp.errors import OutboxFull
from crlhf_lsp.outbox_file import open_outbox
from crlhf_lsp.outbox_send import (
    FIELDS,
    KINDS,
    TOKEN_REFUSED,
    Kind,
    describe,
    parse_row,
    post_rows,
    rejected_rows,
)

__all__ = ["BATCH", "SET_ASIDE_CAP", "SET_ASIDE_DAYS", "Outbox", "SetAside"]

BATCH = 200
SET_ASIDE_CAP = 10_000
SET_ASIDE_DAYS = 30
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetAside:
    """A row the store rejected as a row, kept until requeued or pruned."""

    kind: str
    key: str
    reason: str
    set_aside_at: float
    payload: str


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
        self.max_rows = max_rows
        self.base_delay, self.max_delay = base_delay, max_delay
        self.on_change = on_change or (lambda: None)
        self.warn = warn or (lambda message: None)
        self.client: StoreClient | None = None
        self.reachable: bool | None = None
        self.problem: str | None = None
        """Why the store cannot take rows now (None when it can, or is not known)."""
        self.token_refused = False
        """The store answered 401 or 403: the token is at fault, not the network."""
        self._db = open_outbox(self.path, self.warn)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._delay = 0.0
        self._full_warned = False
        self._warned_problem: str | None = None
        self._aside_total = 0  # rows set aside since start: a flush that did only that progressed
        self._aside_reasons: list[str] = []
        self._thread: threading.Thread | None = None
        self._prune()

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
        if not self._delay:
            # Backing off after a failure: the timer sends it. Waking the flusher for every
            # new row would send one request per rating to a failing store and double the
            # back-off each time (24 ratings in an outage: the next try a minute away).
            self._wake.set()
        self.on_change()

    def pending(self) -> int:
        with self._lock:
            return self._count()

    def set_aside_count(self) -> int:
        with self._lock:
            query = "SELECT count(*) FROM outbox WHERE dead IS NOT NULL"
            return int(self._db.execute(query).fetchone()[0])

    def set_aside(self) -> list[SetAside]:
        """The rows the store rejected as rows, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, key, dead, coalesce(set_aside_at, created), payload FROM outbox "
                "WHERE dead IS NOT NULL ORDER BY id"
            )
            return [SetAside(*row) for row in rows]

    def requeue(self, keys: list[str] | None = None) -> int:
        """Queue set-aside rows again (all, or those of ``keys``); how many were."""
        with self._lock:
            query = "UPDATE outbox SET dead = NULL, set_aside_at = NULL WHERE dead IS NOT NULL"
            if keys is None:
                count = self._db.execute(query).rowcount
            else:
                cursor = self._db.executemany(f"{query} AND key = ?", [(k,) for k in keys])
                count = cursor.rowcount
        if count:
            self.wake()
            self.on_change()
        return int(count)

    def _count(self) -> int:
        return self._db.execute("SELECT count(*) FROM outbox WHERE dead IS NULL").fetchone()[0]

    def _store_name(self) -> str:
        return str(self.client._http.base_url) if self.client is not None else "(none set)"

    # --- flusher ----------------------------------------------------------------------

    def set_client(self, client: StoreClient | None) -> None:
        """A new store or token: tried at once, whatever the back-off had reached."""
        old, self.client = self.client, client
        self._delay = 0.0
        self._warned_problem = None
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
            client = self.client
            if self._stop.is_set() or client is None:
                continue
            aside = self._aside_total
            try:
                sent = self.flush()
            except Exception as exc:  # StoreError, or anything odd: never die
                if client is not self.client:
                    continue  # the client was replaced mid-flush: the new one goes next
                if not isinstance(exc, StoreError):
                    log.exception("outbox flush failed")
                self._set_unreachable(exc)
                backoff = min(self.max_delay, max(self.base_delay, self._delay * 2))
                retry_after = exc.retry_after if isinstance(exc, StoreError) else None
                self._delay = max(backoff, min(retry_after or 0.0, self.max_delay))
                continue
            self._delay = 0.0
            if sent or self._aside_total != aside:
                if sent:
                    self._set_reachable(True, None)
                self._wake.set()  # more may be waiting
            elif self.pending() == 0:
                self._probe(client)

    def _probe(self, client: StoreClient) -> None:
        """Ask ``/v1/me`` when there is nothing to send: the status then knows the store
        and the token before the first rating (a refused token shows at once)."""
        try:
            client.me()
        except Exception as exc:  # a transport failing in an unexpected way is still "down"
            self._set_unreachable(exc)
            return
        self._set_reachable(True, None)

    def flush(self) -> int:
        """Send one batch per kind; the number of rows the store took (new or duplicate).

        Raises the :class:`StoreError` that stopped it when the store cannot take rows now
        (every row is still queued then)."""
        client = self.client
        if client is None:
            return 0
        sent = 0
        # Rows queued after the completions were read wait for the next flush: an event of
        # a completion queued meanwhile would reach the store before it (refused, 422).
        # A full batch of completions leaves the rest, and what refers to them, behind too.
        with self._lock:
            (ceiling,) = self._db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        try:
            for kind in KINDS:
                with self._lock:
                    rows = self._db.execute(
                        "SELECT id, payload FROM outbox WHERE dead IS NULL AND kind = ? "
                        "AND id <= ? ORDER BY id LIMIT ?",
                        (kind, ceiling, BATCH),
                    ).fetchall()
                if kind == "completion" and len(rows) == BATCH:
                    ceiling = rows[-1][0]
                rows = self._readable(kind, rows)
                if rows:
                    sent += self._send(client, kind, rows)
        finally:
            self._warn_set_aside()
            if sent:
                self.on_change()
        return sent

    def _readable(self, kind: Kind, rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """The rows whose payload reads back; the others are set aside. A file torn at its
        end can pass ``quick_check`` with a row's payload zeroed: sending it would fail
        every flush, for ever, and hold up every row behind it."""
        readable = []
        for row_id, payload in rows:
            try:
                parse_row(kind, payload)
            except ValueError as exc:  # JSON or pydantic's ValidationError
                self._set_aside(row_id, f"unreadable in the outbox file (damaged?): {exc}"[:300])
            else:
                readable.append((row_id, payload))
        return readable

    def _send(self, client: StoreClient, kind: Kind, rows: list[tuple[int, str]]) -> int:
        try:
            post_rows(client, kind, [payload for _, payload in rows])
        except StoreRejected as exc:
            if not exc.row_level:
                raise  # the store (or a proxy) refused us, not these rows: keep them all
            reason = f"{exc.status}: {exc.detail}"
            named = rejected_rows(exc.detail, FIELDS[kind], len(rows))
            if named:
                for i in sorted(named):
                    self._set_aside(rows[i][0], reason)
                rest = [row for i, row in enumerate(rows) if i not in named]
                return self._send(client, kind, rest) if rest else 0
            if len(rows) == 1:
                self._set_aside(rows[0][0], reason)
                return 0
            half = len(rows) // 2
            return self._send(client, kind, rows[:half]) + self._send(client, kind, rows[half:])
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i, _ in rows])
        # Reachable as soon as the rows are gone, so a status never shows them sent by an
        # unreachable store.
        self._set_reachable(True, None)
        return len(rows)

    def _set_aside(self, row_id: int, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET dead = ?, set_aside_at = ? WHERE id = ?",
                (reason[:2000], time.time(), row_id),
            )
        self._aside_total += 1
        self._aside_reasons.append(reason)
        self._prune()

    def _warn_set_aside(self) -> None:
        """One warning per flush, however many rows it set aside."""
        reasons, self._aside_reasons = self._aside_reasons, []
        if reasons:
            self.warn(
                f"crlhf: the store rejected {len(reasons)} outbox row(s) ({reasons[0][:300]}); "
                f"they are set aside in {self.path}: command crlhf.setAside lists them, "
                "crlhf.requeue sends them again"
            )

    def _prune(self) -> None:
        """Drop set-aside rows older than ``SET_ASIDE_DAYS`` and beyond ``SET_ASIDE_CAP``."""
        cutoff = time.time() - SET_ASIDE_DAYS * 86400
        with self._lock:
            old = self._db.execute(
                "DELETE FROM outbox WHERE dead IS NOT NULL AND coalesce(set_aside_at, created) < ?",
                (cutoff,),
            ).rowcount
            over = self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE dead IS NOT NULL "
                "ORDER BY coalesce(set_aside_at, created) DESC, id DESC LIMIT -1 OFFSET ?)",
                (SET_ASIDE_CAP,),
            ).rowcount
        if old or over:
            log.warning(
                "outbox %s: dropped %d set-aside rows older than %d days and %d beyond the "
                "cap of %d",
                self.path,
                old,
                SET_ASIDE_DAYS,
                over,
                SET_ASIDE_CAP,
            )

    def _set_unreachable(self, exc: BaseException) -> None:
        refused = isinstance(exc, StoreRejected) and exc.status in TOKEN_REFUSED
        self.token_refused = refused
        self._set_reachable(False, describe(exc), isinstance(exc, StoreRejected))

    def _set_reachable(
        self, reachable: bool, problem: str | None, actionable: bool = False
    ) -> None:
        """Record the store's state for the status; tell the user, once per problem, when
        they can act on it (a refused token or URL). An outage only shows in the status."""
        if reachable:
            self.token_refused = False
        if (reachable, problem) != (self.reachable, self.problem):
            self.reachable, self.problem = reachable, problem
            self.on_change()
        if actionable and problem is not None and problem != self._warned_problem:
            self._warned_problem = problem
            pending = self.pending()
            waiting = f"{pending} rows wait" if pending else "ratings will wait"
            self.warn(
                f"crlhf: the store {self._store_name()} cannot take ratings: {problem}. "
                f"{waiting} in {self.path}; they are sent once it can"
            )
        if reachable:
            self._warned_problem = None
