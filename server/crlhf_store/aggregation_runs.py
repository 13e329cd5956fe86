"""Aggregation runs posted by the trainer: reliability per annotator, reward per completion.

Stored as rows (``aggregation_runs``, ``annotator_reliabilities``, ``completion_rewards``)
so the dashboard can chart them without parsing blobs.
"""

from __future__ import annotations

from crlhf_contract.schemas import AggregationRunIn, AggregationRunOut
from sqlalchemy import select
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
