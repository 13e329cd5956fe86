"""Honeypots figure: how many, and how many of them each annotator has answered."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from crlhf_store.models import Annotator, Completion, Honeypot, LineRating

__all__ = ["HoneypotCoverage", "HoneypotStats", "honeypots"]


class HoneypotCoverage(BaseModel):
    annotator: str
    answered: int
    """Distinct honeypots this annotator rated at least one line of."""
    lines: int
    """Honeypot line ratings stored (history included)."""
    share: float
    """answered / honeypots."""


class HoneypotStats(BaseModel):
    honeypots: int
    lines: int
    """Lines with known truth, over all honeypots."""
    coverage: list[HoneypotCoverage]


def honeypots(session: Session) -> HoneypotStats:
    count, lines = session.execute(
        select(func.count(), func.coalesce(func.sum(Completion.n_lines), 0))
        .select_from(Honeypot)
        .join(Completion, Completion.id == Honeypot.completion_id)
    ).one()
    rows = session.execute(
        select(Annotator.name, func.count(distinct(LineRating.completion_id)), func.count())
        .join(Honeypot, Honeypot.completion_id == LineRating.completion_id)
        .join(Annotator, Annotator.id == LineRating.annotator_id)
        .group_by(Annotator.name)
        .order_by(Annotator.name)
    )
    return HoneypotStats(
        honeypots=int(count),
        lines=int(lines),
        coverage=[
            HoneypotCoverage(
                annotator=name, answered=int(a), lines=int(n), share=a / count if count else 0.0
            )
            for name, a, n in rows
        ],
    )
