"""``/v1/stats/...``: the JSON behind each dashboard chart (admin scope).

Each endpoint returns exactly what :mod:`crlhf_store.stats` computes for the page. A query
parameter an endpoint does not declare is refused (422 naming it) rather than ignored, so a
typo such as ``?day=7`` does not silently give the 30-day default.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from crlhf_store import stats
from crlhf_store.deps import StoreDep, require
from crlhf_store.routes import AUTH
from crlhf_store.tokens import Principal


def strict_query(request: Request) -> None:
    """Refuse query parameters the matched route does not declare."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    declared = _query_names(dependant) if dependant is not None else set()
    for name in request.query_params:
        if name not in declared:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", name),
                        "msg": f"unknown query parameter {name!r}",
                        "type": "extra_forbidden",
                        "input": request.query_params[name],
                    }
                ]
            )


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


router = APIRouter(
    prefix="/v1/stats", tags=["stats"], responses=AUTH, dependencies=[Depends(strict_query)]
)
AdminDep = Annotated[Principal, Depends(require("admin"))]


@router.get("/overview", response_model=stats.Overview)
def overview(
    principal: AdminDep,
    store: StoreDep,
    days: Annotated[int, Query(ge=1, le=366, description="days back, today included")] = 30,
) -> stats.Overview:
    """Ratings and active annotators per day; completions shown / accepted / rated."""
    with store.db.reading() as session:
        return stats.overview(session, days=days)


@router.get("/annotators", response_model=stats.AnnotatorStats)
def annotators(principal: AdminDep, store: StoreDep) -> stats.AnnotatorStats:
    """Per annotator: ratings, honeypot accuracy, reliability and flag of the latest run."""
    with store.db.reading() as session:
        return stats.annotators(session)


@router.get("/rewards", response_model=stats.RewardStats)
def rewards(
    principal: AdminDep,
    store: StoreDep,
    runs: Annotated[int, Query(ge=1, le=365, description="latest aggregation runs")] = 14,
) -> stats.RewardStats:
    """Reward distribution per aggregation run, and per language in the latest run."""
    with store.db.reading() as session:
        return stats.rewards(session, runs=runs)


@router.get("/adapters", response_model=list[stats.AdapterRow])
def adapters(principal: AdminDep, store: StoreDep) -> list[stats.AdapterRow]:
    """Adapter versions with parent, status, pass@k before/after and who published."""
    with store.db.reading() as session:
        return stats.adapters(session)


@router.get("/honeypots", response_model=stats.HoneypotStats)
def honeypots(principal: AdminDep, store: StoreDep) -> stats.HoneypotStats:
    """How many honeypots, and how many each annotator answered."""
    with store.db.reading() as session:
        return stats.honeypots(session)
