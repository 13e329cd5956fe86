"""``/v1/stats/...``: the JSON behind each dashboard chart (admin scope).

Each endpoint returns exactly what the page's ``stats_*`` module computes. A query
parameter an endpoint does not declare is refused (422 naming it) rather than ignored, so a
typo such as ``?day=7`` does not silently give the 30-day default.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from crlhf_store.dashboard import (
    stats_adapters,
    stats_annotators,
    stats_honeypots,
    stats_overview,
    stats_rewards,
)
from crlhf_store.deps import StoreDep, require, strict_query
from crlhf_store.routes import AUTH
from crlhf_store.tokens import Principal

router = APIRouter(
    prefix="/v1/stats", tags=["stats"], responses=AUTH, dependencies=[Depends(strict_query)]
)
AdminDep = Annotated[Principal, Depends(require("admin"))]


@router.get("/overview", response_model=stats_overview.Overview)
def overview(
    principal: AdminDep,
    store: StoreDep,
    days: Annotated[int, Query(ge=1, le=366, description="days back, today included")] = 30,
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
