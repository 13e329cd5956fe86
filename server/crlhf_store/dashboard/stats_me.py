"""An annotator's own figures (their page, ``/dashboard/me``; ``/v1/stats/me``): how many
ratings, their honeypot accuracy with a 90% Wilson interval, and what waits for them in
the review queue. Only ever the caller's own data.

The queue count is of the model's completions the queue could still serve them (another
annotator's, a slot free, not seen before) plus the tasks served and not yet answered.
Honeypots are not counted apart: how many exist is not an annotator's to learn.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crlhf_store.dashboard.stats_annotators import honeypot_scores, wilson_interval
from crlhf_store.models import Completion, LineRating, ReviewAssignment

__all__ = ["MyStats", "my_stats"]


class MyStats(BaseModel):
    annotator: str
    ratings: int
    """Line ratings stored (history included)."""
    lines: int
    """Distinct lines rated."""
    last_active: datetime | None
    honeypot_answers: int
    honeypot_accuracy: float | None
    honeypot_low: float | None
    honeypot_high: float | None
    review_open: int
    """Review tasks served to them and not answered yet (nor expired or skipped)."""
    review_available: int
    """Completions the queue could still serve them."""


def _queue(session: Session, annotator_id: int, redundancy: int, now: datetime) -> tuple[int, int]:
    open_tasks = session.scalar(
        select(func.count())
        .select_from(ReviewAssignment)
        .where(
            ReviewAssignment.annotator_id == annotator_id,
            ReviewAssignment.answered_at.is_(None),
            ReviewAssignment.released_at.is_(None),
            (ReviewAssignment.expires_at.is_(None)) | (ReviewAssignment.expires_at > now),
        )
    )
    seen = select(ReviewAssignment.completion_id).where(
        ReviewAssignment.annotator_id == annotator_id
    )
    available = session.scalar(
        select(func.count())
        .select_from(Completion)
        .where(
            Completion.is_honeypot.is_(False),
            func.coalesce(Completion.annotator_id, -1) != annotator_id,
            Completion.review_assigned < func.coalesce(Completion.review_target, redundancy),
            Completion.id.not_in(seen),
        )
    )
    return int(open_tasks or 0), int(available or 0)


def my_stats(
    session: Session, *, annotator_id: int, name: str, redundancy: int, now: datetime | None = None
) -> MyStats:
    """The figures of annotator ``annotator_id`` (``name``) and nobody else's."""
    mine = LineRating.annotator_id == annotator_id
    n, last = session.execute(
        select(func.count(), func.max(LineRating.created_at)).where(mine)
    ).one()
    distinct_lines = select(LineRating.completion_id, LineRating.line).where(mine).distinct()
    lines = session.scalar(select(func.count()).select_from(distinct_lines.subquery()))
    correct, answered = honeypot_scores(session, annotator_id=annotator_id).get(
        annotator_id, (0, 0)
    )
    low, high = wilson_interval(correct, answered) if answered else (None, None)
    review_open, available = _queue(session, annotator_id, redundancy, now or datetime.now(UTC))
    return MyStats(
        annotator=name,
        ratings=int(n),
        lines=int(lines or 0),
        last_active=last,
        honeypot_answers=answered,
        honeypot_accuracy=correct / answered if answered else None,
        honeypot_low=low,
        honeypot_high=high,
        review_open=review_open,
        review_available=available,
    )
