"""``/v1/stats/...``: the JSON behind each dashboard chart (admin scope; ``/v1/stats/me``:
any token, the caller's own figures only).

Each endpoint returns exactly what the page's ``stats_*`` module computes. A query
parameter an endpoint does not declare is refused (422 naming it) rather than ignored, so a
typo such as ``?day=7`` does not silently give the 30-day default.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from crlhf_store.dashboard import (
    stats_adapters,
    stats_agreement,
    stats_annotators,
    stats_calibration,
    stats_disagreement,
    stats_honeypots,
    stats_me,
    stats_overview,
    stats_retention,
    stats_rewards,
)
from crlhf_store.deps import AnnotatorDep, StoreDep, require, strict_query
from crlhf_store.routes import AUTH
from crlhf_store.tokens import Principal

router = APIRouter(
    prefix="/v1/stats", tags=["stats"], responses=AUTH, dependencies=[Depends(strict_query)]
)
AdminDep = Annotated[Principal, Depends(require("admin"))]
DaysQuery = Annotated[int, Query(ge=1, le=366, description="days back, today included")]


@router.get("/overview", response_model=stats_overview.Overview)
def overview(
    principal: AdminDep,
    store: StoreDep,
    days: DaysQuery = 30,
) -> stats_overview.Overview:
    """Ratings and active annotators per day; completions shown / accepted / rated."""
    with store.db.reading() as session:
        return stats_overview.overview(session, days=days)


@router.get("/annotators", response_model=stats_annotators.AnnotatorStats)
def annotators(principal: AdminDep, store: StoreDep) -> stats_annotators.AnnotatorStats:
    """Per annotator: ratings, honeypot accuracy, reliability and flag of the latest run."""
    with store.db.reading() as session:
        return stats_annotators.annotators(session)


@router.get("/rewards", response_model=stats_rewards.RewardStats)
def rewards(
    principal: AdminDep,
    store: StoreDep,
    runs: Annotated[int, Query(ge=1, le=365, description="latest aggregation runs")] = 14,
) -> stats_rewards.RewardStats:
    """Reward distribution per aggregation run, and per language in the latest run."""
    with store.db.reading() as session:
        return stats_rewards.rewards(session, runs=runs)


@router.get("/adapters", response_model=list[stats_adapters.AdapterRow])
def adapters(principal: AdminDep, store: StoreDep) -> list[stats_adapters.AdapterRow]:
    """Adapter versions with parent, status, pass@k before/after and who published."""
    with store.db.reading() as session:
        return stats_adapters.adapters(session)


@router.get("/honeypots", response_model=stats_honeypots.HoneypotStats)
def honeypots(principal: AdminDep, store: StoreDep) -> stats_honeypots.HoneypotStats:
    """How many honeypots, and how many each annotator answered."""
    with store.db.reading() as session:
        return stats_honeypots.honeypots(session)


@router.get("/agreement", response_model=stats_agreement.AgreementStats)
def agreement(principal: AdminDep, store: StoreDep) -> stats_agreement.AgreementStats:
    """Krippendorff's α (all lines, per language); agreement with the aggregate and in pairs."""
    with store.db.reading() as session:
        return stats_agreement.agreement(session)


@router.get("/disagreement", response_model=stats_disagreement.DisagreementStats)
def disagreement(
    principal: AdminDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500, description="most disputed lines")] = 20,
) -> stats_disagreement.DisagreementStats:
    """The most disputed lines of the model's completions (vote entropy × votes)."""
    with store.db.reading() as session:
        return stats_disagreement.disagreement(session, limit=limit)


@router.get("/calibration", response_model=stats_calibration.CalibrationStats)
def calibration(
    principal: AdminDep,
    store: StoreDep,
    bins: Annotated[int, Query(ge=2, le=50, description="equal-width bins of P")] = 10,
) -> stats_calibration.CalibrationStats:
    """Aggregated P(correct) on honeypot lines against their truth: bins, Brier, ECE."""
    with store.db.reading() as session:
        return stats_calibration.calibration(session, bins=bins)


@router.get("/retention", response_model=stats_retention.RetentionStats)
def retention(
    principal: AdminDep,
    store: StoreDep,
    days: DaysQuery = 30,
) -> stats_retention.RetentionStats:
    """Accepted and retained characters per day and per adapter version."""
    with store.db.reading() as session:
        return stats_retention.retention(session, days=days)


@router.get("/me", response_model=stats_me.MyStats)
def me(principal: AnnotatorDep, store: StoreDep) -> stats_me.MyStats:
    """The caller's own figures: ratings, honeypot accuracy, review queue."""
    with store.db.reading() as session:
        return stats_me.my_stats(
            session,
            annotator_id=principal.annotator_id,
            name=principal.name,
            redundancy=store.settings.review_redundancy,
        )
