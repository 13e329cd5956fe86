"""Batches from the language server: completions, events and line ratings.

Each batch is one transaction: every row is checked before anything is written, so a
bad row (named by its index and field) leaves the database untouched. Retries are
no-ops: rows carry a client-chosen id (``id`` / ``event_id``) and are inserted with
``INSERT … ON CONFLICT DO NOTHING``, which on PostgreSQL also settles concurrent posts of
the same batch (the second waits for the first to commit, then skips) and on SQLite is
serialised by the single writer.
"""

from __future__ import annotations

import functools
import hashlib
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from crlhf_contract.schemas import CompletionIn, EventIn, RatingIn, Stored, completion_lines
from sqlalchemy import JSON, Table, Uuid, any_, bindparam, cast, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crlhf_store import review
from crlhf_store.db import is_postgresql
from crlhf_store.errors import Conflict, Invalid, TooMany
from crlhf_store.models import Completion, CompletionEvent, LineRating, ReviewAssignment


def insert_ignoring_duplicates(
    session: Session, table: Table, rows: list[dict[str, Any]], key: str
):  # type: ignore[no-untyped-def]
    """``INSERT … ON CONFLICT (key) DO NOTHING RETURNING key`` on either database.

    Rows go in key order: two batches that share keys then take their unique-index locks
    in the same order on PostgreSQL, so they wait for each other instead of deadlocking.
    """
    rows = sorted(rows, key=lambda row: str(row[key]))
    columns = tuple(rows[0])
    if is_postgresql(session) and not any(isinstance(table.c[c].type, JSON) for c in columns):
        arrays = {f"{c}_array": [row[c] for row in rows] for c in columns}
        return session.execute(_unnest_insert(table, columns, key), arrays).scalars().all()
    # One cached statement executed with many parameter sets: SQLAlchemy's
    # "insertmanyvalues" batches them into multi-row INSERTs at the driver.
    stmt = _rows_insert(session.get_bind().dialect.name, table, key)
    return session.execute(stmt, rows).scalars().all()


@functools.cache
def _rows_insert(dialect: str, table: Table, key: str):  # type: ignore[no-untyped-def]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])


@functools.cache
def _unnest_insert(table: Table, columns: tuple[str, ...], key: str):  # type: ignore[no-untyped-def]
    """PostgreSQL: ``INSERT … SELECT * FROM unnest(%(a)s::uuid[], …)``, one array a column
    (scalar columns only: completions, with their JSON token lists, take the path above).

    Why not insertmanyvalues: its multi-row ``VALUES`` text changes with the row count and
    is too long for psycopg's query cache, so psycopg re-parsed ~600 placeholders per batch
    in Python (a third of the store's CPU at 100 ratings a batch). This statement's text is
    the same for every batch: compiled once, prepared by the server, parsed never again.
    """
    arrays = [cast(bindparam(f"{c}_array"), postgresql.ARRAY(table.c[c].type)) for c in columns]
    source = func.unnest(*arrays).table_valued(*columns).render_derived(name="batch")
    return (
        postgresql.insert(table)
        .from_select(list(columns), select(*(source.c[c] for c in columns)))
        .on_conflict_do_nothing(index_elements=[key])
        .returning(table.c[key])
    )


def content_hash(completion: CompletionIn) -> str:
    body = completion.model_dump_json(exclude={"id"})
    return hashlib.sha256(body.encode()).hexdigest()


def store_completions(
    session: Session, *, annotator_id: int, completions: Sequence[CompletionIn]
) -> Stored:
    """Store new completions; the same id with other content is a :class:`Conflict`."""
    hashes: dict[uuid.UUID, str] = {}
    rows: list[dict[str, Any]] = []
    for i, c in enumerate(completions):
        h = content_hash(c)
        if hashes.setdefault(c.id, h) != h:
            raise Conflict(f"completions[{i}]: id {c.id} appears twice with different content")
        if len(hashes) > len(rows):
            rows.append(_completion_row(c, annotator_id=annotator_id, content_hash=h))
    if not rows:
        return Stored(stored=0, duplicates=0)
    _check_same_content(session, hashes, completions)
    table = Completion.__table__
    inserted = set(insert_ignoring_duplicates(session, table, rows, "id"))  # type: ignore[arg-type]
    if len(inserted) < len(rows):  # a concurrent post won the race: same content, or 409
        _check_same_content(session, hashes, completions)
    return Stored(stored=len(inserted), duplicates=len(completions) - len(inserted))


def _completion_row(c: CompletionIn, *, annotator_id: int, content_hash: str) -> dict[str, Any]:
    return c.model_dump() | {
        "annotator_id": annotator_id,
        "n_lines": len(completion_lines(c.text)),
        "content_hash": content_hash,
        "is_honeypot": False,
    }


def _check_same_content(
    session: Session, hashes: dict[uuid.UUID, str], completions: Sequence[CompletionIn]
) -> None:
    stored = dict(
        session.execute(
            select(Completion.id, Completion.content_hash).where(Completion.id.in_(hashes))
        ).all()
    )
    for i, c in enumerate(completions):
        if c.id in stored and stored[c.id] != hashes[c.id]:
            raise Conflict(
                f"completions[{i}]: completion {c.id} already exists with different content; "
                "a completion is immutable, post a new id"
            )


def _line_counts(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if is_postgresql(session):
        # ``= ANY(array)``: one query text whatever the number of ids (prepared once),
        # where ``IN (…)`` renders one placeholder per id and is re-parsed every batch.
        ids_array = cast(bindparam("ids", list(ids)), postgresql.ARRAY(Uuid))
        wanted = Completion.id == any_(ids_array)
    else:
        wanted = Completion.id.in_(ids)
    query = select(Completion.id, Completion.n_lines).where(wanted)
    return dict(session.execute(query).all())


def _known_completions(
    session: Session, ids: Sequence[uuid.UUID], field: str
) -> dict[uuid.UUID, int]:
    """Line counts of the completions ``ids`` names; an unknown one fails the whole batch."""
    n_lines = _line_counts(session, set(ids))
    for i, cid in enumerate(ids):
        if cid not in n_lines:
            raise Invalid(
                f"unknown completion {cid}; post it to /v1/completions first",
                loc=("body", field, i, "completion_id"),
            )
    return n_lines


def store_events(session: Session, *, annotator_id: int, events: Sequence[EventIn]) -> Stored:
    """All-or-nothing, like ratings; a ``retained`` event must name lines of the completion
    and the completion must be the poster's own (:mod:`crlhf_contract.retention`)."""
    if not events:
        return Stored(stored=0, duplicates=0)
    n_lines = _known_completions(session, [e.completion_id for e in events], "events")
    if any(e.kind == "retained" for e in events):
        _check_retained(session, annotator_id, events, n_lines)
    rows = [_event_row(e, annotator_id, with_payload=True) for e in events]
    if all(row["payload"] is None for row in rows):
        # no JSON column: PostgreSQL's one-statement unnest insert (see above)
        rows = [_event_row(e, annotator_id, with_payload=False) for e in events]
    table = CompletionEvent.__table__
    stored = len(insert_ignoring_duplicates(session, table, rows, "event_id"))  # type: ignore[arg-type]
    return Stored(stored=stored, duplicates=len(events) - stored)


def _event_row(e: EventIn, annotator_id: int, *, with_payload: bool) -> dict[str, Any]:
    row = e.model_dump(include={"event_id", "completion_id", "kind", "accepted_chars"})
    row["annotator_id"] = annotator_id
    if with_payload:
        row["payload"] = (
            None if e.lines is None else e.model_dump(mode="json", include={"after_s", "lines"})
        )
    return row


def _check_retained(
    session: Session, annotator_id: int, events: Sequence[EventIn], n_lines: dict[uuid.UUID, int]
) -> None:
    ids = {e.completion_id for e in events if e.kind == "retained"}
    own = set(
        session.scalars(
            select(Completion.id).where(
                Completion.id.in_(ids), Completion.annotator_id == annotator_id
            )
        )
    )
    for i, e in enumerate(events):
        if e.kind != "retained":
            continue
        if e.completion_id not in own:
            raise Invalid(
                f"completion {e.completion_id} is not yours: only its author's editor "
                "reports what became of its lines",
                loc=("body", "events", i, "completion_id"),
            )
        for j, line in enumerate(e.lines or []):
            if line.line >= n_lines[e.completion_id]:
                raise Invalid(
                    f"line {line.line} is past the end of completion {e.completion_id}, "
                    f"which has {n_lines[e.completion_id]} lines (0-based)",
                    loc=("body", "events", i, "lines", j, "line"),
                )


def _check_lines(ratings: Sequence[RatingIn], n_lines: dict[uuid.UUID, int]) -> None:
    for i, r in enumerate(ratings):
        if r.line >= n_lines[r.completion_id]:
            raise Invalid(
                f"line {r.line} is past the end of completion {r.completion_id}, "
                f"which has {n_lines[r.completion_id]} lines (0-based)",
                loc=("body", "ratings", i, "line"),
            )


def _check_served(
    session: Session, annotator_id: int, ratings: Sequence[RatingIn], own: set[uuid.UUID]
) -> None:
    """Every rated completion is the annotator's own or a review task served to them."""
    ids = {r.completion_id for r in ratings}
    served = set(
        session.scalars(
            select(ReviewAssignment.completion_id).where(
                ReviewAssignment.annotator_id == annotator_id,
                ReviewAssignment.completion_id.in_(ids - own),
            )
        )
    )
    for i, r in enumerate(ratings):
        if r.completion_id not in own and r.completion_id not in served:
            raise Invalid(
                f"completion {r.completion_id} is neither yours nor a review task served "
                "to you; rate what GET /v1/review/next gives you",
                loc=("body", "ratings", i, "completion_id"),
            )


def store_ratings(
    session: Session,
    *,
    annotator_id: int,
    ratings: Sequence[RatingIn],
    need_task: bool = False,
    per_minute: int = 0,
    per_day: int = 0,
) -> Stored:
    """All-or-nothing: an unknown completion, a line past its end or (``need_task``) a
    completion neither the annotator's nor served to them stores nothing.

    The author's ratings of their own completion are stored with ``own`` (a signal of its
    own, never a crowd vote); an annotator's earlier ratings of a line this batch rates
    again are marked ``superseded`` (the last of the batch is the newest).
    """
    if not ratings:
        return Stored(stored=0, duplicates=0)
    now = datetime.now(UTC)
    _check_rate(session, annotator_id, len(ratings), now, per_minute, per_day)
    n_lines = _known_completions(session, [r.completion_id for r in ratings], "ratings")
    _check_lines(ratings, n_lines)
    ids = {r.completion_id for r in ratings}
    own = set(
        session.scalars(
            select(Completion.id).where(
                Completion.id.in_(ids), Completion.annotator_id == annotator_id
            )
        )
    )
    if need_task:
        _check_served(session, annotator_id, ratings, own)
    last = {(r.completion_id, r.line): r.event_id for r in ratings}
    rows = [
        r.model_dump()
        | {
            "annotator_id": annotator_id,
            "own": r.completion_id in own,
            "superseded": last[(r.completion_id, r.line)] != r.event_id,
        }
        for r in ratings
    ]
    table = LineRating.__table__
    inserted = set(insert_ignoring_duplicates(session, table, rows, "event_id"))  # type: ignore[arg-type]
    # Older ratings of the lines that got a new one: superseded. Only for rows this call
    # inserted: a retried old batch (duplicates) must not supersede what came after it.
    fresh = [key for key, event_id in last.items() if event_id in inserted]
    if fresh:
        session.execute(
            update(LineRating)
            .where(
                LineRating.annotator_id == annotator_id,
                tuple_(LineRating.completion_id, LineRating.line).in_(fresh),
                LineRating.event_id.not_in([last[key] for key in fresh]),
                LineRating.superseded.is_(False),
            )
            .values(superseded=True)
            .execution_options(synchronize_session=False)
        )
    review.mark_answered(session, annotator_id=annotator_id, completion_ids=ids, now=now)
    return Stored(stored=len(inserted), duplicates=len(ratings) - len(inserted))


def _check_rate(
    session: Session, annotator_id: int, n: int, now: datetime, per_minute: int, per_day: int
) -> None:
    """429 when ``n`` more ratings would pass the annotator's per-minute or daily cap."""
    for limit, window, what in (
        (per_minute, timedelta(minutes=1), "a minute"),
        (per_day, timedelta(days=1), "a day"),
    ):
        if not limit:
            continue
        if n > limit:
            raise Invalid(
                f"a batch of {n} ratings is more than the {limit} an annotator may post in {what}",
                loc=("body", "ratings"),
            )
        since = now - window
        recent = session.scalar(
            select(func.count())
            .select_from(LineRating)
            .where(LineRating.annotator_id == annotator_id, LineRating.created_at > since)
        )
        over = (recent or 0) + n - limit
        if over > 0:
            # the rows that must age out of the window first: the oldest ``over`` of it
            oldest = session.scalar(
                select(LineRating.created_at)
                .where(LineRating.annotator_id == annotator_id, LineRating.created_at > since)
                .order_by(LineRating.created_at)
                .offset(over - 1)
                .limit(1)
            )
            wait = ((oldest or now) + window - now).total_seconds() if oldest else 1
            raise TooMany(
                f"{recent} ratings in the last {what} (the limit is {limit}); "
                f"retry in {math.ceil(wait)} s",
                retry_after=math.ceil(wait),
            )
