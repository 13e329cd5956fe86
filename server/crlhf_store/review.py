"""The review queue: which completion or honeypot an annotator rates next.

A task is either a completion that fewer than ``review_redundancy`` annotators other than
its author have rated or been served, or a honeypot (known per-line truth). Honeypots are
mixed in at ``honeypot_rate``, or at ``honeypot_rate_new`` while the annotator has
answered fewer than ``honeypot_warmup`` of them, so a new annotator's reliability is
measured fast. Both kinds go out as the same :class:`ReviewTask`; a honeypot's truth
stays in the database. An annotator is never served the same completion twice.
"""

from __future__ import annotations

import random
import uuid

from crlhf_contract.schemas import ReviewTask
from sqlalchemy import Select, func, literal_column, select, union
from sqlalchemy.orm import Session

from crlhf_store.models import Completion, Honeypot, LineRating, ReviewAssignment


def next_task(
    session: Session,
    *,
    annotator_id: int,
    redundancy: int,
    honeypot_rate: float,
    honeypot_rate_new: float,
    honeypot_warmup: int,
    rng: random.Random | None = None,
) -> ReviewTask | None:
    """Serve (and record) the next review task of an annotator, or None if there is none."""
    answered = session.scalar(
        select(func.count(func.distinct(LineRating.completion_id)))
        .join(Honeypot, Honeypot.completion_id == LineRating.completion_id)
        .where(LineRating.annotator_id == annotator_id)
    )
    rate = honeypot_rate_new if (answered or 0) < honeypot_warmup else honeypot_rate
    pickers = [_pick_honeypot, _pick_completion]
    if (rng or random).random() >= rate:
        pickers.reverse()
    for pick in pickers:
        completion = session.scalar(pick(annotator_id, redundancy).limit(1))
        if completion is not None:
            task = ReviewAssignment(
                id=uuid.uuid4(), annotator_id=annotator_id, completion_id=completion.id
            )
            session.add(task)
            session.flush()
            return ReviewTask(
                task_id=task.id,
                completion_id=completion.id,
                language=completion.language,
                prompt=completion.prompt,
                text=completion.text,
            )
    return None


def _seen_by(annotator_id: int):  # type: ignore[no-untyped-def]
    return union(
        select(LineRating.completion_id).where(LineRating.annotator_id == annotator_id),
        select(ReviewAssignment.completion_id).where(ReviewAssignment.annotator_id == annotator_id),
    )


def _pick_honeypot(annotator_id: int, redundancy: int) -> Select[tuple[Completion]]:
    return (
        select(Completion)
        .where(Completion.is_honeypot.is_(True), Completion.id.not_in(_seen_by(annotator_id)))
        .order_by(func.random())
    )


def _pick_completion(annotator_id: int, redundancy: int) -> Select[tuple[Completion]]:
    reviewers = union(
        # correlate() explicitly: inside a FROM subquery SQLAlchemy would otherwise add
        # `completions` to these FROMs and count the reviewers of every completion at once
        select(LineRating.annotator_id.label("who"))
        .where(LineRating.completion_id == Completion.id)
        .correlate(Completion),
        select(ReviewAssignment.annotator_id.label("who"))
        .where(ReviewAssignment.completion_id == Completion.id)
        .correlate(Completion),
    ).subquery()
    n_reviewers = (
        select(func.count())
        .select_from(reviewers)
        .where(reviewers.c.who != func.coalesce(Completion.annotator_id, literal_column("-1")))
        .correlate(Completion)
        .scalar_subquery()
    )
    return (
        select(Completion)
        .where(
            Completion.is_honeypot.is_(False),
            Completion.annotator_id != annotator_id,
            Completion.id.not_in(_seen_by(annotator_id)),
            n_reviewers < redundancy,
        )
        .order_by(Completion.created_at, Completion.id)
    )
