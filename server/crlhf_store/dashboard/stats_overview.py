"""Overview figure: ratings and active annotators per day, completions shown / accepted /
rated, acceptance rate.

Counts are of *distinct* completions and of stored rows, so an outbox that replays a batch
or delivers it a day late changes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from crlhf_store.models import Completion, CompletionEvent, LineRating

__all__ = ["DayCount", "Overview", "overview"]


class DayCount(BaseModel):
    day: date
    ratings: int
    active_annotators: int
    """Annotators who stored at least one line rating that day."""
    shown: int
    accepted: int


class Overview(BaseModel):
    completions: int
    """Completions of the model (honeypots not counted)."""
    shown: int
    """Completions with at least one ``shown`` event."""
    accepted: int
    """Completions accepted in full or in part."""
    rated: int
    """Completions with at least one line rating."""
    acceptance_rate: float | None
    """accepted / shown; null before anything was shown."""
    ratings: int
    annotators: int
    """Annotators who ever rated a line."""
    active_annotators_7d: int
    days: list[DayCount]


def _day(value: Any) -> date:
    # SQLite's date() gives 'YYYY-MM-DD', PostgreSQL's a date.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _per_day(session: Session, column: Any, value: Any, since: datetime, *where: Any) -> dict:
    day = func.date(column)
    rows = session.execute(select(day, value).where(column >= since, *where).group_by(day))
    return {_day(d): int(n) for d, n in rows}


def overview(session: Session, *, days: int = 30, now: datetime | None = None) -> Overview:
    """Totals, and per day over the last ``days`` days (UTC, today included)."""
    now = now or datetime.now(UTC)
    first = now.date() - timedelta(days=days - 1)
    model = Completion.is_honeypot.is_(False)
    completions = session.scalar(select(func.count()).select_from(Completion).where(model))

    def events(*kinds: str) -> int:
        return (
            session.scalar(
                select(func.count(distinct(CompletionEvent.completion_id))).where(
                    CompletionEvent.kind.in_(kinds)
                )
            )
            or 0
        )

    shown, accepted = events("shown"), events("accepted", "partial")
    rated = session.scalar(
        select(func.count(distinct(LineRating.completion_id)))
        .join(Completion, Completion.id == LineRating.completion_id)
        .where(model)
    )
    ratings = session.scalar(select(func.count()).select_from(LineRating)) or 0
    annotators = session.scalar(select(func.count(distinct(LineRating.annotator_id)))) or 0
    week = now - timedelta(days=7)
    active_7d = session.scalar(
        select(func.count(distinct(LineRating.annotator_id))).where(LineRating.created_at >= week)
    )
    return Overview(
        completions=completions or 0,
        shown=shown,
        accepted=accepted,
        rated=rated or 0,
        acceptance_rate=accepted / shown if shown else None,
        ratings=ratings,
        annotators=annotators,
        active_annotators_7d=active_7d or 0,
        days=_days(session, first, days),
    )


def _days(session: Session, first: date, days: int) -> list[DayCount]:
    """The per-day counts of ``days`` days from ``first`` (UTC), zero where nothing happened."""
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    per_ratings = _per_day(session, LineRating.created_at, func.count(), since)
    per_active = _per_day(
        session, LineRating.created_at, func.count(distinct(LineRating.annotator_id)), since
    )
    count_completions = func.count(distinct(CompletionEvent.completion_id))
    per_shown = _per_day(
        session,
        CompletionEvent.created_at,
        count_completions,
        since,
        CompletionEvent.kind == "shown",
    )
    per_accepted = _per_day(
        session,
        CompletionEvent.created_at,
        count_completions,
        since,
        CompletionEvent.kind.in_(("accepted", "partial")),
    )
    return [
        DayCount(
            day=d,
            ratings=per_ratings.get(d, 0),
            active_annotators=per_active.get(d, 0),
            shown=per_shown.get(d, 0),
            accepted=per_accepted.get(d, 0),
        )
        for d in (first + timedelta(days=i) for i in range(days))
    ]
