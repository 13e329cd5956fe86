"""Annotators figure: per annotator, ratings, honeypot accuracy with a 90% Wilson
interval, the reliability the latest aggregation run estimated (with its interval and flag).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crlhf_store.models import AggregationRun, Annotator, AnnotatorReliability, Honeypot, LineRating

__all__ = [
    "AnnotatorRow",
    "AnnotatorStats",
    "annotators",
    "honeypot_scores",
    "wilson_interval",
]


Z90 = 1.6448536269514722  # two-sided 90%, the interval the trainer reports for reliabilities


class AnnotatorRow(BaseModel):
    annotator: str
    ratings: int
    last_active: datetime | None
    honeypot_answers: int
    """Honeypot lines this annotator labelled (their newest label per line counts)."""
    honeypot_accuracy: float | None
    honeypot_low: float | None
    honeypot_high: float | None
    reliability: float | None
    """π estimated by the latest aggregation run; null if that run did not see them."""
    reliability_low: float | None
    reliability_high: float | None
    spammer_score: float | None
    flag: str | None
    """``ok`` | ``spammer`` | ``adversary``, from the latest aggregation run."""


class AnnotatorStats(BaseModel):
    run_id: int | None
    method: str | None
    run_at: datetime | None
    annotators: list[AnnotatorRow]


def wilson_interval(correct: int, n: int, z: float = Z90) -> tuple[float, float]:
    """Wilson score interval of a proportion (good at small n and near 0 or 1).

    >>> [round(x, 3) for x in wilson_interval(9, 10)]
    [0.652, 0.977]
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def honeypot_scores(
    session: Session, *, annotator_id: int | None = None
) -> dict[int, tuple[int, int]]:
    """annotator id → (correct, answered) on honeypot lines, newest label per line
    (of one annotator's labels only, given ``annotator_id``)."""
    truth = dict(session.execute(select(Honeypot.completion_id, Honeypot.truth)).all())
    if not truth:
        return {}
    query = (
        select(LineRating.annotator_id, LineRating.completion_id, LineRating.line, LineRating.label)
        .join(Honeypot, Honeypot.completion_id == LineRating.completion_id)
        .order_by(LineRating.id)
    )
    if annotator_id is not None:
        query = query.where(LineRating.annotator_id == annotator_id)
    rows = session.execute(query)
    newest: dict[tuple[int, uuid.UUID, int], int] = {}
    for who, cid, line, label in rows:
        newest[(who, cid, line)] = label
    scores: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for (who, cid, line), label in newest.items():
        lines = truth[cid]
        if line < len(lines):
            scores[who][0] += int(label == lines[line])
            scores[who][1] += 1
    return {k: (v[0], v[1]) for k, v in scores.items()}


def _latest_run(session: Session) -> AggregationRun | None:
    return session.scalar(select(AggregationRun).order_by(AggregationRun.id.desc()).limit(1))


def annotators(session: Session) -> AnnotatorStats:
    """Every annotator who rated a line or was scored by the latest aggregation run."""
    activity = {
        row.annotator_id: (int(row.n), row.last)
        for row in session.execute(
            select(
                LineRating.annotator_id,
                func.count().label("n"),
                func.max(LineRating.created_at).label("last"),
            ).group_by(LineRating.annotator_id)
        )
    }
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    run = _latest_run(session)
    reliabilities = (
        {
            r.annotator: r
            for r in session.scalars(
                select(AnnotatorReliability).where(AnnotatorReliability.run_id == run.id)
            )
        }
        if run
        else {}
    )
    honeypot = honeypot_scores(session)
    id_by_name = {n: i for i, n in names.items()}
    rows = []
    for name in sorted({names[i] for i in activity if i in names} | reliabilities.keys()):
        annotator_id = id_by_name.get(name)
        n, last = activity.get(annotator_id, (0, None))
        correct, answered = honeypot.get(annotator_id, (0, 0))
        low, high = wilson_interval(correct, answered) if answered else (None, None)
        rel = reliabilities.get(name)
        rows.append(
            AnnotatorRow(
                annotator=name,
                ratings=n,
                last_active=last,
                honeypot_answers=answered,
                honeypot_accuracy=correct / answered if answered else None,
                honeypot_low=low,
                honeypot_high=high,
                reliability=rel.reliability if rel else None,
                reliability_low=rel.low if rel else None,
                reliability_high=rel.high if rel else None,
                spammer_score=rel.spammer_score if rel else None,
                flag=rel.flag if rel else None,
            )
        )
    return AnnotatorStats(
        run_id=run.id if run else None,
        method=run.method if run else None,
        run_at=run.created_at if run else None,
        annotators=rows,
    )
