"""Paged exports for the trainer: line ratings (with honeypot truth) and completions.

The cursor rule. Row ids are handed out when a row is inserted, but on PostgreSQL
transactions commit out of id order: reading ``id > cursor`` could pass over an id whose
transaction was still in flight and commits later, skipping it for ever. So the export
orders rows by ``seq``, an export position stamped only on rows that have committed:

1. Each export first takes a lock (``pg_advisory_xact_lock`` on PostgreSQL; on SQLite the
   write lock, the single writer), then stamps every committed row whose ``seq`` is null
   with ``max(seq) + 1, + 2, …`` in id order, and reads ``seq > cursor`` in the same
   transaction.
2. A row that commits after that export is stamped by a later one, which runs after this
   one committed, so it gets a larger ``seq`` than anything this export returned.

Hence a cursor (the last ``seq`` of a page, an opaque decimal string) never skips a row
nor repeats one, while ratings keep arriving. ``next`` is null only on an empty page:
keep the last non-null ``next`` to resume later.
"""

from __future__ import annotations

import uuid

from crlhf_contract.retention import ExportedRetainedLine, ExportedRetention, RetentionExport
from crlhf_contract.schemas import (
    CompletionExport,
    CompletionOut,
    ExportedLabel,
    LabelExport,
    completion_lines,
)
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from crlhf_store.db import is_postgresql
from crlhf_store.models import Annotator, Completion, CompletionEvent, Honeypot, LineRating

_SEQUENCER_LOCK = {
    "line_ratings": 0x63726C01,
    "completions": 0x63726C02,
    "completion_events": 0x63726C03,
}
_STAMPED = {"completion_events": "kind = 'retained' AND "}
"""Tables of which only some rows get an export position: the condition on them."""
STAMP_BATCH = 50_000
"""Most rows stamped by one export call; the rest get stamped by the next calls."""


def stamp_committed(session: Session, table: str) -> None:
    """Give committed rows of ``table`` without a ``seq`` the next export positions."""
    if is_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SEQUENCER_LOCK[table]})
        order = "created_at, id" if table == "completions" else "id"
    else:
        order = "rowid"  # insertion order
    only = _STAMPED.get(table, "")
    session.execute(
        text(
            f"UPDATE {table} SET seq = s.base + s.rn FROM ("
            f" SELECT id, (SELECT coalesce(max(seq), 0) FROM {table}) AS base,"
            f" row_number() OVER (ORDER BY {order}) AS rn"
            f" FROM {table} WHERE {only}seq IS NULL ORDER BY {order} LIMIT :n"
            f") AS s WHERE {table}.id = s.id"
        ),
        {"n": STAMP_BATCH},
    )


def export_labels(session: Session, *, after: int, limit: int) -> LabelExport:
    """The next ``limit`` line ratings after the cursor, with the truth of honeypots among them."""
    stamp_committed(session, "line_ratings")
    rows = session.execute(
        select(
            LineRating.seq,
            LineRating.id,
            LineRating.completion_id,
            LineRating.line,
            Annotator.name,
            LineRating.label,
            LineRating.created_at,
            LineRating.own,
            LineRating.superseded,
        )
        .join(Annotator, Annotator.id == LineRating.annotator_id)
        .where(LineRating.seq > after)
        .order_by(LineRating.seq)
        .limit(limit)
    ).all()
    # Typed columns straight from the database: nothing to validate, and at 10,000 rows a
    # page, validating them again was a tenth of the store's CPU under a steady ingest.
    labels = [
        ExportedLabel.model_construct(
            rating_id=r.id,
            completion_id=r.completion_id,
            line=r.line,
            annotator=r.name,
            label=r.label,
            created_at=r.created_at,
            own=r.own,
            superseded=r.superseded,
        )
        for r in rows
    ]
    return LabelExport(
        labels=labels,
        honeypots=honeypot_truth(session, {r.completion_id for r in rows}),
        next=str(rows[-1].seq) if rows else None,
    )


def honeypot_truth(session: Session, ids: set[uuid.UUID]) -> dict[str, list[int]]:
    if not ids:
        return {}
    query = select(Honeypot.completion_id, Honeypot.truth).where(Honeypot.completion_id.in_(ids))
    return {str(cid): list(truth) for cid, truth in session.execute(query)}


def export_completions(session: Session, *, after: int, limit: int) -> CompletionExport:
    """The next ``limit`` completions of the model after the cursor (honeypots left out)."""
    stamp_committed(session, "completions")
    rows = session.execute(
        select(Completion, Annotator.name)
        .join(Annotator, Annotator.id == Completion.annotator_id)
        .where(Completion.seq > after, Completion.is_honeypot.is_(False))
        .order_by(Completion.seq)
        .limit(limit)
    ).all()
    out = [
        CompletionOut(
            id=c.id,
            prompt=c.prompt,
            suffix=c.suffix,
            language=c.language,
            text=c.text,
            model=c.model,
            adapter_version=c.adapter_version,
            token_ids=c.token_ids,
            token_logprobs=c.token_logprobs,
            prompt_token_ids=c.prompt_token_ids,
            annotator=name,
            created_at=c.created_at,
            seq=c.seq,
        )
        for c, name in rows
    ]
    return CompletionExport(completions=out, next=str(rows[-1][0].seq) if rows else None)


def export_retention(session: Session, *, after: int, limit: int) -> RetentionExport:
    """The next ``limit`` ``retained`` events after the cursor, each line with the
    completion's text of it (``original``): with a ``correction``, an expected edit."""
    stamp_committed(session, "completion_events")
    rows = session.execute(
        select(CompletionEvent, Annotator.name, Completion.text)
        .join(Annotator, Annotator.id == CompletionEvent.annotator_id)
        .join(Completion, Completion.id == CompletionEvent.completion_id)
        .where(CompletionEvent.seq > after, CompletionEvent.kind == "retained")
        .order_by(CompletionEvent.seq)
        .limit(limit)
    ).all()
    out = []
    for event, name, text_ in rows:
        payload = event.payload or {}
        lines = completion_lines(text_)
        out.append(
            ExportedRetention(
                event_id=event.event_id,
                completion_id=event.completion_id,
                annotator=name,
                after_s=payload.get("after_s", 0.0),
                lines=[
                    ExportedRetainedLine(**line, original=lines[line["line"]])
                    for line in payload.get("lines", [])
                    if line["line"] < len(lines)
                ],
                created_at=event.created_at,
                seq=event.seq,
            )
        )
    return RetentionExport(retention=out, next=str(rows[-1][0].seq) if rows else None)
