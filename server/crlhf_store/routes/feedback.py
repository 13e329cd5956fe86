"""Ingest (completions, events, ratings), the review queue and the exports."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from crlhf_contract.retention import RetentionExport
from crlhf_contract.schemas import (
    CompletionBatch,
    CompletionExport,
    EventBatch,
    LabelExport,
    RatingBatch,
    ReviewTask,
    Stored,
)
from fastapi import APIRouter, Query, Response

from crlhf_store import export, ingest, review
from crlhf_store.deps import AnnotatorDep, StoreDep, TrainerDep
from crlhf_store.routes import AUTH, BODY, CONFLICT
from crlhf_store.strictjson import StrictJSONRoute

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)
Cursor = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,18}$", description="`next` of the previous page; omit to start"),
]


@router.post(
    "/completions", response_model=Stored, tags=["ingest"], responses=AUTH | BODY | CONFLICT
)
def post_completions(batch: CompletionBatch, principal: AnnotatorDep, store: StoreDep) -> Stored:
    """Store completions; the same id re-posted with the same content is a no-op."""
    with store.db.writing() as session:
        return ingest.store_completions(
            session, annotator_id=principal.annotator_id, completions=batch.completions
        )


@router.post("/events", response_model=Stored, tags=["ingest"], responses=AUTH | BODY)
def post_events(batch: EventBatch, principal: AnnotatorDep, store: StoreDep) -> Stored:
    """Store shown / accepted / partial / dismissed / retained events, idempotent by
    ``event_id``; one bad row stores nothing (422). A ``retained`` event reports what became
    of the lines of the caller's own completion (``crlhf_contract.retention``)."""
    with store.db.writing() as session:
        return ingest.store_events(
            session, annotator_id=principal.annotator_id, events=batch.events
        )


@router.post("/ratings", response_model=Stored, tags=["ingest"], responses=AUTH | BODY)
def post_ratings(batch: RatingBatch, principal: AnnotatorDep, store: StoreDep) -> Stored:
    """Store line ratings, idempotent by ``event_id``; one bad row stores nothing (422).

    Only the caller's own completions and the review tasks served to them can be rated; an
    annotator's newer rating of a line supersedes their older one (history kept); over the
    rate limit or the daily quota the answer is 429 with ``Retry-After``.
    """
    s = store.settings
    with store.db.writing() as session:
        return ingest.store_ratings(
            session,
            annotator_id=principal.annotator_id,
            ratings=batch.ratings,
            need_task=s.ratings_need_task,
            per_minute=s.rating_rate_per_minute,
            per_day=s.rating_quota_per_day,
        )


@router.get(
    "/review/next",
    response_model=ReviewTask,
    tags=["review"],
    responses=AUTH | {204: {"description": "nothing to review now"}},
)
def review_next(principal: AnnotatorDep, store: StoreDep) -> ReviewTask | Response:
    """The next completion (or honeypot: they look alike) to rate, or 204."""
    s = store.settings
    with store.db.writing() as session:
        task = review.next_task(
            session,
            annotator_id=principal.annotator_id,
            redundancy=s.review_redundancy,
            honeypot_rate=s.honeypot_rate,
            honeypot_rate_new=s.honeypot_rate_new,
            honeypot_warmup=s.honeypot_warmup,
            assignment_ttl=timedelta(seconds=s.review_assignment_ttl_s),
            rng=store.rng,
        )
    return task if task is not None else Response(status_code=204)


@router.post(
    "/review/{task_id}/skip",
    status_code=204,
    tags=["review"],
    responses=AUTH | {404: {"description": "no such task of yours"}},
)
def review_skip(task_id: uuid.UUID, principal: AnnotatorDep, store: StoreDep) -> Response:
    """Give a task back unanswered: its slot goes to another annotator."""
    with store.db.writing() as session:
        review.skip_task(session, annotator_id=principal.annotator_id, task_id=task_id)
    return Response(status_code=204)


@router.get("/labels/export", response_model=LabelExport, tags=["export"], responses=AUTH)
def labels_export(
    principal: TrainerDep,
    store: StoreDep,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 5000,
) -> LabelExport:
    """Line ratings after the cursor, with the per-line truth of honeypots among them."""
    with store.db.writing() as session:
        return export.export_labels(session, after=int(after or 0), limit=limit)


@router.get("/completions/export", response_model=CompletionExport, tags=["export"], responses=AUTH)
def completions_export(
    principal: TrainerDep,
    store: StoreDep,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> CompletionExport:
    """The model's completions after the cursor (token ids and log-probs for the trainer)."""
    with store.db.writing() as session:
        return export.export_completions(session, after=int(after or 0), limit=limit)


@router.get("/retention/export", response_model=RetentionExport, tags=["export"], responses=AUTH)
def retention_export(
    principal: TrainerDep,
    store: StoreDep,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 5000,
) -> RetentionExport:
    """``retained`` events after the cursor: per accepted line, unchanged / edited / deleted
    after ``after_s`` seconds, with the developer's correction of an edited line."""
    with store.db.writing() as session:
        return export.export_retention(session, after=int(after or 0), limit=limit)
