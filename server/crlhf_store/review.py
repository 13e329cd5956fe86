"""The review queue: which completion or honeypot an annotator rates next.

A task is a completion (of another annotator) or a honeypot (known per-line truth); both
go out as the same :class:`ReviewTask`, and a honeypot's truth stays in the database.
Honeypots only measure reliability if nobody can tell them apart, so:

- **Same work whatever is served.** Every call runs both pickers, the same statements in
  the same order, and only then chooses; what it writes is the same for both kinds. The
  latency of a request says nothing about what it served (tests/store/test_review_leaks.py).
- **Same exposure.** Every item, honeypot or completion, has slots:
  ``completions.review_assigned`` counts the annotators holding or having answered a task
  of it, up to ``review_target`` (default ``review_redundancy``). Honeypots are rotated:
  the least exposed first. A honeypot is therefore seen by as many annotators as a
  completion, and colluders comparing ids learn nothing from the count.
- **Same share.** The kind of an annotator's next task is drawn once (``honeypot_rate``,
  or ``honeypot_rate_new`` while they answered fewer than ``honeypot_warmup`` honeypots)
  and kept in ``annotators.review_next_kind`` until a task can be served, so asking again
  draws nothing new. When no completion is left for an annotator the answer is None
  (204), whatever was drawn: a queue that would serve only honeypots serves nothing.
- **Slots come back.** A task expires ``assignment_ttl`` after it was served unless
  answered (a rating of it); a skipped one (:func:`skip_task`) frees its slot at once.
- **No over-assignment.** Candidates are locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
  and the slot count is a column of the locked row, which PostgreSQL re-checks when it
  locks a row changed since the query's snapshot; SQLite has one writer at a time.

An annotator is never served the same item twice, nor their own completion.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from crlhf_contract.schemas import ReviewTask
from sqlalchemy import Select, case, func, select, update
from sqlalchemy.orm import Session

from crlhf_store.errors import NotFound
from crlhf_store.models import Annotator, Completion, Honeypot, LineRating, ReviewAssignment

HONEYPOT, COMPLETION = "honeypot", "completion"
REAP_BATCH = 500
"""Most expired tasks released by one call (the next calls release the rest)."""


def next_task(
    session: Session,
    *,
    annotator_id: int,
    redundancy: int,
    honeypot_rate: float,
    honeypot_rate_new: float,
    honeypot_warmup: int,
    assignment_ttl: timedelta = timedelta(hours=24),
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> ReviewTask | None:
    """Serve (and record) the next review task of an annotator, or None if there is none."""
    now = now or datetime.now(UTC)
    # One call of an annotator at a time (their drawn kind, "never the same item twice").
    annotator = session.scalar(
        select(Annotator).where(Annotator.id == annotator_id).with_for_update()
    )
    if annotator is None:
        raise NotFound(f"no annotator {annotator_id}")
    release_expired(session, now=now)
    kind = annotator.review_next_kind
    if kind not in (HONEYPOT, COMPLETION):
        answered = session.scalar(
            select(func.count(func.distinct(LineRating.completion_id)))
            .join(Honeypot, Honeypot.completion_id == LineRating.completion_id)
            .where(LineRating.annotator_id == annotator_id)
        )
        rate = honeypot_rate_new if (answered or 0) < honeypot_warmup else honeypot_rate
        kind = HONEYPOT if (rng or random).random() < rate else COMPLETION
    # Both pickers, every call: the work does not depend on the kind drawn.
    honeypot = session.scalar(_candidates(annotator_id, redundancy, honeypot=True))
    completion = session.scalar(_candidates(annotator_id, redundancy, honeypot=False))
    if completion is None:  # never only honeypots: keep the drawn kind for the next call
        annotator.review_next_kind = kind
        session.flush()
        return None
    chosen = honeypot if kind == HONEYPOT and honeypot is not None else completion
    annotator.review_next_kind = None
    session.execute(
        update(Completion)
        .where(Completion.id == chosen.id)
        .values(review_assigned=Completion.review_assigned + 1)
        .execution_options(synchronize_session=False)
    )
    task = ReviewAssignment(
        id=uuid.uuid4(),
        annotator_id=annotator_id,
        completion_id=chosen.id,
        created_at=now,
        expires_at=now + assignment_ttl,
    )
    session.add(task)
    session.flush()
    return ReviewTask(
        task_id=task.id,
        completion_id=chosen.id,
        language=chosen.language,
        prompt=chosen.prompt,
        text=chosen.text,
    )


def _candidates(annotator_id: int, redundancy: int, *, honeypot: bool) -> Select[tuple[Completion]]:
    """The best item of one kind for this annotator, locked (skipping locked ones)."""
    seen = select(ReviewAssignment.completion_id).where(
        ReviewAssignment.annotator_id == annotator_id
    )
    order = (
        # rotate honeypots: the least exposed first, ties at random
        (Completion.review_assigned, func.random())
        if honeypot
        # the most uncertain first (review_priority), then the oldest
        else (Completion.review_priority.desc(), Completion.created_at, Completion.id)
    )
    return (
        select(Completion)
        .where(
            Completion.is_honeypot.is_(honeypot),
            func.coalesce(Completion.annotator_id, -1) != annotator_id,
            Completion.review_assigned < func.coalesce(Completion.review_target, redundancy),
            Completion.id.not_in(seen),
        )
        .order_by(*order)
        .limit(1)
        .with_for_update(skip_locked=True, of=Completion)
    )


def release_expired(session: Session, *, now: datetime) -> int:
    """Release tasks past ``expires_at`` and not answered; returns how many."""
    expired = (
        select(ReviewAssignment.id)
        .where(
            ReviewAssignment.released_at.is_(None),
            ReviewAssignment.answered_at.is_(None),
            ReviewAssignment.expires_at < now,
        )
        .order_by(ReviewAssignment.expires_at)
        .limit(REAP_BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(expired))
    if not ids:
        return 0
    freed = session.scalars(
        update(ReviewAssignment)
        .where(ReviewAssignment.id.in_(ids))
        .values(released_at=now)
        .returning(ReviewAssignment.completion_id)
        .execution_options(synchronize_session=False)
    ).all()
    _free_slots(session, freed)
    return len(ids)


def _free_slots(session: Session, completion_ids: list[uuid.UUID]) -> None:
    counts: dict[uuid.UUID, int] = {}
    for cid in completion_ids:
        counts[cid] = counts.get(cid, 0) + 1
    for cid in sorted(counts, key=str):  # one lock order: concurrent releases never deadlock
        left = Completion.review_assigned - counts[cid]
        session.execute(
            update(Completion)
            .where(Completion.id == cid)
            .values(review_assigned=case((left > 0, left), else_=0))
            .execution_options(synchronize_session=False)
        )


def skip_task(session: Session, *, annotator_id: int, task_id: uuid.UUID) -> None:
    """An annotator gives a task back unanswered: its slot goes to someone else."""
    task = session.scalar(
        select(ReviewAssignment)
        .where(ReviewAssignment.id == task_id, ReviewAssignment.annotator_id == annotator_id)
        .with_for_update()
    )
    if task is None:
        raise NotFound(f"no review task {task_id} of yours")
    if task.released_at is not None or task.answered_at is not None:
        return  # already given back, or answered: nothing to free
    task.released_at = datetime.now(UTC)
    session.flush()
    _free_slots(session, [task.completion_id])


def mark_answered(
    session: Session, *, annotator_id: int, completion_ids: set[uuid.UUID], now: datetime
) -> None:
    """Ratings arrived for these completions: the annotator's open tasks of them are done."""
    if not completion_ids:
        return
    session.execute(
        update(ReviewAssignment)
        .where(
            ReviewAssignment.annotator_id == annotator_id,
            ReviewAssignment.completion_id.in_(completion_ids),
            ReviewAssignment.answered_at.is_(None),
            ReviewAssignment.released_at.is_(None),
        )
        .values(answered_at=now)
        .execution_options(synchronize_session=False)
    )
