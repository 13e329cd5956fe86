"""The figures behind the dashboard and ``/v1/stats/...``: plain functions of a session.

Every function is keyword-only, reads the database and returns a pydantic model (the same
model the JSON endpoint serves, so a chart and its endpoint cannot disagree).

- :func:`overview`: ratings and active annotators per day, completions shown / accepted /
  rated, acceptance rate. Counts are of *distinct* completions and of stored rows, so an
  outbox that replays a batch or delivers it a day late changes nothing.
- :func:`annotators`: per annotator, ratings, honeypot accuracy with a 90% Wilson interval,
  the reliability the latest aggregation run estimated (with its interval and flag).
- :func:`rewards`: the reward distribution per aggregation run ("night") and, for the
  latest run, per language. Histograms are counted in SQL (20 bins of 0.05); quantiles are
  interpolated within a bin, so they are exact to ±0.025.
- :func:`adapters`: the registry as a timeline, pass@k before (the parent's) and after.
- :func:`honeypots`: how many, and how many of them each annotator has answered.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from crlhf_store.dashboard.models import AdapterStatusChange
from crlhf_store.models import (
    Adapter,
    AggregationRun,
    Annotator,
    AnnotatorReliability,
    Completion,
    CompletionEvent,
    CompletionReward,
    Honeypot,
    LineRating,
)

__all__ = [
    "AdapterRow",
    "AnnotatorRow",
    "AnnotatorStats",
    "DayCount",
    "Distribution",
    "HoneypotCoverage",
    "HoneypotStats",
    "LanguageRewards",
    "Overview",
    "PassAt",
    "RewardStats",
    "RunRewards",
    "StatusChange",
    "adapters",
    "annotators",
    "honeypots",
    "overview",
    "rewards",
    "wilson_interval",
]

BINS = 20
Z90 = 1.6448536269514722  # two-sided 90%, the interval the trainer reports for reliabilities


# --- overview ----------------------------------------------------------------------------


class DayCount(BaseModel):
    day: date
    ratings: int
    active_annotators: int
    """Annotators who stored at least one line rating that day."""
    shown: int
    accepted: int


class Overview(BaseModel):
    completions: int
    """Completions of the model (honeypots not counted)."""
    shown: int
    """Completions with at least one ``shown`` event."""
    accepted: int
    """Completions accepted in full or in part."""
    rated: int
    """Completions with at least one line rating."""
    acceptance_rate: float | None
    """accepted / shown; null before anything was shown."""
    ratings: int
    annotators: int
    """Annotators who ever rated a line."""
    active_annotators_7d: int
    days: list[DayCount]


def _day(value: Any) -> date:
    # SQLite's date() gives 'YYYY-MM-DD', PostgreSQL's a date.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _per_day(session: Session, column: Any, value: Any, since: datetime, *where: Any) -> dict:
    day = func.date(column)
    rows = session.execute(select(day, value).where(column >= since, *where).group_by(day))
    return {_day(d): int(n) for d, n in rows}


def overview(session: Session, *, days: int = 30, now: datetime | None = None) -> Overview:
    """Totals, and per day over the last ``days`` days (UTC, today included)."""
    now = now or datetime.now(UTC)
    first = now.date() - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    model = Completion.is_honeypot.is_(False)
    completions = session.scalar(select(func.count()).select_from(Completion).where(model))

    def events(*kinds: str) -> int:
        return (
            session.scalar(
                select(func.count(distinct(CompletionEvent.completion_id))).where(
                    CompletionEvent.kind.in_(kinds)
                )
            )
            or 0
        )

    shown, accepted = events("shown"), events("accepted", "partial")
    rated = session.scalar(
        select(func.count(distinct(LineRating.completion_id)))
        .join(Completion, Completion.id == LineRating.completion_id)
        .where(model)
    )
    ratings = session.scalar(select(func.count()).select_from(LineRating)) or 0
    annotators = session.scalar(select(func.count(distinct(LineRating.annotator_id)))) or 0
    week = now - timedelta(days=7)
    active_7d = session.scalar(
        select(func.count(distinct(LineRating.annotator_id))).where(LineRating.created_at >= week)
    )
    per_ratings = _per_day(session, LineRating.created_at, func.count(), since)
    per_active = _per_day(
        session, LineRating.created_at, func.count(distinct(LineRating.annotator_id)), since
    )
    count_completions = func.count(distinct(CompletionEvent.completion_id))
    per_shown = _per_day(
        session,
        CompletionEvent.created_at,
        count_completions,
        since,
        CompletionEvent.kind == "shown",
    )
    per_accepted = _per_day(
        session,
        CompletionEvent.created_at,
        count_completions,
        since,
        CompletionEvent.kind.in_(("accepted", "partial")),
    )
    series = [
        DayCount(
            day=d,
            ratings=per_ratings.get(d, 0),
            active_annotators=per_active.get(d, 0),
            shown=per_shown.get(d, 0),
            accepted=per_accepted.get(d, 0),
        )
        for d in (first + timedelta(days=i) for i in range(days))
    ]
    return Overview(
        completions=completions or 0,
        shown=shown,
        accepted=accepted,
        rated=rated or 0,
        acceptance_rate=accepted / shown if shown else None,
        ratings=ratings,
        annotators=annotators,
        active_annotators_7d=active_7d or 0,
        days=series,
    )


# --- annotators --------------------------------------------------------------------------


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
    [0.668, 0.977]
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _honeypot_scores(session: Session) -> dict[int, tuple[int, int]]:
    """annotator id → (correct, answered) on honeypot lines, newest label per line."""
    truth = dict(session.execute(select(Honeypot.completion_id, Honeypot.truth)).all())
    if not truth:
        return {}
    rows = session.execute(
        select(LineRating.annotator_id, LineRating.completion_id, LineRating.line, LineRating.label)
        .join(Honeypot, Honeypot.completion_id == LineRating.completion_id)
        .order_by(LineRating.id)
    )
    newest: dict[tuple[int, uuid.UUID, int], int] = {}
    for annotator_id, cid, line, label in rows:
        newest[(annotator_id, cid, line)] = label
    scores: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for (annotator_id, cid, line), label in newest.items():
        lines = truth[cid]
        if line < len(lines):
            scores[annotator_id][0] += int(label == lines[line])
            scores[annotator_id][1] += 1
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
    honeypot = _honeypot_scores(session)
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


# --- rewards -----------------------------------------------------------------------------


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


# --- adapters ----------------------------------------------------------------------------


class PassAt(BaseModel):
    metric: str
    """A gated metric of the trainer: ``<benchmark>/pass@k`` or ``heldout/…``."""
    before: float | None
    """The parent adapter's value (the base model's for a first adapter, if recorded)."""
    after: float | None


class StatusChange(BaseModel):
    status: str
    actor: str
    at: datetime


class GateCheck(BaseModel):
    """One metric the trainer's gate compared, paired over ``n`` held-out items."""

    name: str
    n: int
    delta: float | None
    low: float | None  # 90% interval of candidate − baseline
    high: float | None
    verdict: str  # ok | harm | too few


class GateSummary(BaseModel):
    decision: str  # publish | refused | not enough evidence
    reason: str
    checks: list[GateCheck]


def _gate_summary(metrics: Any) -> GateSummary | None:
    """What the trainer recorded of its gate (``metrics["gate_decision"]``), if anything."""
    raw = metrics.get("gate_decision") if isinstance(metrics, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return GateSummary.model_validate(raw, strict=False)
    except ValueError:
        return None  # an older trainer's record: show the plain reason only


class AdapterRow(BaseModel):
    version: str
    parent: str | None
    base_model: str
    status: str
    created_at: datetime
    created_by: str | None
    published_at: datetime | None
    published_by: str | None
    pass_at: list[PassAt]
    history: list[StatusChange]
    gate: GateSummary | None = None
    gate_reason: str | None = None


def _gated(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if ("/pass@" in k or k.startswith("heldout/")) and isinstance(v, int | float):
            if k == "heldout/completions":
                continue  # a count, not a metric
            out[k] = float(v)
    return out


def adapters(session: Session) -> list[AdapterRow]:
    """Every adapter, oldest first, with its status history."""
    rows = list(session.scalars(select(Adapter).order_by(Adapter.id)))
    history: dict[int, list[StatusChange]] = defaultdict(list)
    for change in session.scalars(select(AdapterStatusChange).order_by(AdapterStatusChange.id)):
        history[change.adapter_id].append(
            StatusChange(status=change.status, actor=change.actor, at=change.created_at)
        )
    metrics = {r.version: _gated(r.metrics or {}) for r in rows}
    out = []
    for r in rows:
        after = metrics[r.version]
        baseline = r.metrics.get("baseline") if isinstance(r.metrics, dict) else None
        before = metrics.get(r.parent or "") or (
            _gated(baseline) if isinstance(baseline, dict) else {}
        )
        published = [c for c in history[r.id] if c.status == "published"]
        out.append(
            AdapterRow(
                version=r.version,
                parent=r.parent,
                base_model=r.base_model,
                status=r.status,
                created_at=r.created_at,
                created_by=r.created_by,
                published_at=r.published_at,
                published_by=published[-1].actor if published else None,
                pass_at=[
                    PassAt(metric=k, before=before.get(k), after=after.get(k))
                    for k in sorted(after.keys() | before.keys())
                ],
                history=history[r.id],
                gate=_gate_summary(r.metrics),
                gate_reason=(r.metrics or {}).get("gate") if isinstance(r.metrics, dict) else None,
            )
        )
    return out


# --- honeypots ---------------------------------------------------------------------------


class HoneypotCoverage(BaseModel):
    annotator: str
    answered: int
    """Distinct honeypots this annotator rated at least one line of."""
    lines: int
    """Honeypot line ratings stored (history included)."""
    share: float
    """answered / honeypots."""


class HoneypotStats(BaseModel):
    honeypots: int
    lines: int
    """Lines with known truth, over all honeypots."""
    coverage: list[HoneypotCoverage]


def honeypots(session: Session) -> HoneypotStats:
    count, lines = session.execute(
        select(func.count(), func.coalesce(func.sum(Completion.n_lines), 0))
        .select_from(Honeypot)
        .join(Completion, Completion.id == Honeypot.completion_id)
    ).one()
    rows = session.execute(
        select(Annotator.name, func.count(distinct(LineRating.completion_id)), func.count())
        .join(Honeypot, Honeypot.completion_id == LineRating.completion_id)
        .join(Annotator, Annotator.id == LineRating.annotator_id)
        .group_by(Annotator.name)
        .order_by(Annotator.name)
    )
    return HoneypotStats(
        honeypots=int(count),
        lines=int(lines),
        coverage=[
            HoneypotCoverage(
                annotator=name, answered=int(a), lines=int(n), share=a / count if count else 0.0
            )
            for name, a, n in rows
        ],
    )
