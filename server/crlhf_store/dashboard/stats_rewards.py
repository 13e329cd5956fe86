"""Rewards figure: the reward distribution per aggregation run ("night") and, for the
latest run, per language.

Histograms are counted in SQL (20 bins of 0.05); quantiles are interpolated within a bin,
so they are exact to ±0.025.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from crlhf_store.models import AggregationRun, Completion, CompletionReward

__all__ = ["Distribution", "LanguageRewards", "RewardStats", "RunRewards", "rewards"]


BINS = 20


class Distribution(BaseModel):
    n: int
    mean: float | None
    p10: float | None
    p25: float | None
    median: float | None
    p75: float | None
    p90: float | None
    histogram: list[int]
    """Counts in 20 bins of width 0.05 over [0, 1] (the last bin includes 1)."""


class RunRewards(BaseModel):
    run_id: int
    method: str
    created_at: datetime
    rewards: Distribution


class LanguageRewards(BaseModel):
    language: str
    rewards: Distribution


class RewardStats(BaseModel):
    runs: list[RunRewards]
    """Oldest first: one per aggregation run ("night")."""
    languages: list[LanguageRewards]
    """Per language, in the latest run."""


def _bin(column: Any) -> Any:
    # CASE rather than CAST/FLOOR: CAST rounds on PostgreSQL and truncates on SQLite,
    # and SQLite may lack floor().
    return case(*[(column < (i + 1) / BINS, i) for i in range(BINS - 1)], else_=BINS - 1)


def _quantile(hist: list[int], q: float) -> float:
    """The q-quantile of binned data, linear within the bin it falls in."""
    target, seen = q * sum(hist), 0
    for i, count in enumerate(hist):
        if count and seen + count >= target:
            return (i + (target - seen) / count) / BINS
        seen += count
    return 1.0


def _distribution(hist: list[int], mean: float | None) -> Distribution:
    n = sum(hist)
    qs = {k: _quantile(hist, q) if n else None for k, q in _QUANTILES.items()}
    return Distribution(n=n, mean=mean, histogram=hist, **qs)


_QUANTILES = {"p10": 0.1, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9}


def _histograms(session: Session, key: Any, *where: Any, join: bool = False) -> dict:
    bin_ = _bin(CompletionReward.reward)
    stmt = select(key, bin_, func.count(), func.sum(CompletionReward.reward)).where(*where)
    if join:
        stmt = stmt.join(Completion, Completion.id == CompletionReward.completion_id)
    out: dict[Any, tuple[list[int], float]] = {}
    for k, b, n, total in session.execute(stmt.group_by(key, bin_)):
        hist, s = out.get(k, ([0] * BINS, 0.0))
        hist[int(b)] += int(n)
        out[k] = (hist, s + float(total or 0))
    return {k: _distribution(h, s / sum(h) if sum(h) else None) for k, (h, s) in out.items()}


def rewards(session: Session, *, runs: int = 14) -> RewardStats:
    """Reward distributions of the last ``runs`` aggregation runs, and per language."""
    recent = list(
        session.scalars(select(AggregationRun).order_by(AggregationRun.id.desc()).limit(runs))
    )[::-1]
    if not recent:
        return RewardStats(runs=[], languages=[])
    ids = [r.id for r in recent]
    per_run = _histograms(session, CompletionReward.run_id, CompletionReward.run_id.in_(ids))
    empty = _distribution([0] * BINS, None)
    per_language = _histograms(
        session, Completion.language, CompletionReward.run_id == ids[-1], join=True
    )
    return RewardStats(
        runs=[
            RunRewards(
                run_id=r.id,
                method=r.method,
                created_at=r.created_at,
                rewards=per_run.get(r.id, empty),
            )
            for r in recent
        ],
        languages=[
            LanguageRewards(language=lang or "(none)", rewards=d)
            for lang, d in sorted(per_language.items())
        ],
    )
