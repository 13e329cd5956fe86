"""Aggregation runs posted by the trainer: reliability per annotator, reward per completion.

Stored as rows (``aggregation_runs``, ``annotator_reliabilities``, ``completion_rewards``)
so the dashboard can chart them without parsing blobs.

Active relabelling (:func:`route_reviews`): a run's reward intervals tell the review queue
where the crowd's attention pays. A completion whose interval is wider than
``review_certain_width`` is served first (``review_priority``: the width) and up to
``review_redundancy_max`` annotators; one already certain is asked about no more
(``review_target`` 0). Honeypots take targets drawn from the same ones, so how many
annotators see an item still says nothing about what it is. ``bench/crowd_budget.py``
measures what this saves.
"""

from __future__ import annotations

import random

from crlhf_contract.schemas import AggregationRunIn, AggregationRunOut
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crlhf_store.errors import Invalid
from crlhf_store.models import (
    AggregationRun,
    Annotator,
    AnnotatorReliability,
    Completion,
    CompletionReward,
)


def store_run(session: Session, *, run: AggregationRunIn, created_by: str) -> AggregationRunOut:
    ids = {r.completion_id for r in run.rewards}
    known = (
        set(session.scalars(select(Completion.id).where(Completion.id.in_(ids)))) if ids else set()
    )
    for i, r in enumerate(run.rewards):
        if r.completion_id not in known:
            raise Invalid(
                f"unknown completion {r.completion_id}", loc=("body", "rewards", i, "completion_id")
            )
    names = {a.annotator for a in run.annotators}
    annotator_ids = (
        dict(
            session.execute(
                select(Annotator.name, Annotator.id).where(Annotator.name.in_(names))
            ).all()
        )
        if names
        else {}
    )
    row = AggregationRun(
        method=run.method,
        n_labels=run.n_labels,
        n_items=run.n_items,
        metrics=run.metrics,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    session.add_all(
        AnnotatorReliability(
            run_id=row.id, annotator_id=annotator_ids.get(a.annotator), **a.model_dump()
        )
        for a in run.annotators
    )
    session.add_all(CompletionReward(run_id=row.id, **r.model_dump()) for r in run.rewards)
    session.flush()
    return to_out(row)


def to_out(row: AggregationRun) -> AggregationRunOut:
    return AggregationRunOut(
        id=row.id,
        method=row.method,
        n_labels=row.n_labels,
        n_items=row.n_items,
        created_at=row.created_at,
    )


def list_runs(session: Session, *, limit: int = 100) -> list[AggregationRunOut]:
    rows = session.scalars(select(AggregationRun).order_by(AggregationRun.id.desc()).limit(limit))
    return [to_out(r) for r in rows]


def route_reviews(
    session: Session,
    *,
    run: AggregationRunIn,
    redundancy_max: int,
    certain_width: float,
    rng: random.Random | None = None,
) -> None:
    """Set each rewarded completion's review priority and target from its interval."""
    rows = []
    for r in run.rewards:
        width = max(0.0, r.high - r.low)
        target = redundancy_max if width > certain_width else 0
        rows.append({"id": r.completion_id, "review_priority": width, "review_target": target})
    if not rows:
        return
    session.execute(update(Completion), rows)
    # How many annotators each rewarded completion ends up with; honeypots draw theirs
    # from these, so a count per item looks the same whatever the item is.
    seen = dict(
        session.execute(
            select(Completion.id, Completion.review_assigned).where(
                Completion.id.in_([row["id"] for row in rows])
            )
        ).all()
    )
    finals = [max(row["review_target"], seen.get(row["id"], 0)) for row in rows]
    finals = [n for n in finals if n > 0]
    if finals:
        pick = rng or random
        honeypots = session.scalars(select(Completion.id).where(Completion.is_honeypot.is_(True)))
        session.execute(
            update(Completion),
            [{"id": cid, "review_target": pick.choice(finals)} for cid in honeypots],
        )
