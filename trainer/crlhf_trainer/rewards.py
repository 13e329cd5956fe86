"""Per-completion rewards from per-line posteriors.

A completion with lines l = 0..L-1 gets the reward the source method defines, the share
of correct lines.  With qₗ = P(line l correct | labels), the number of correct lines K is
Poisson–binomial (independent Bernoulli(qₗ)), so

    reward = E[K] / L = (1/L) Σₗ qₗ

and its 90% interval is [k₀.₀₅, k₀.₉₅] / L (widened to include the mean), the 5% and 95%
quantiles of K, from the exact distribution:
pmf₀ = [1], pmfₗ(k) = pmfₗ₋₁(k)(1-qₗ) + pmfₗ₋₁(k-1)·qₗ.

Lines nobody rated get the class prior.  Items are named ``"<completion_id>:<line>"``;
an item without a ``:<line>`` suffix is a one-line completion of its own.

>>> from crlhf_trainer.aggregation import AggregationResult
>>> res = AggregationResult("em2", ["c:0", "c:1"], np.array([0.9, 0.5]), [], 0.7)
>>> r = completion_rewards(res, {"c": 3})["c"]
>>> round(r.mean, 4), r.line_posteriors
(0.7, [0.9, 0.5, 0.7])
>>> (r.low, r.high)
(0.3333333333333333, 1.0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .aggregation.base import INTERVAL, AggregationResult
from .aggregation.items import split_item
from .aggregation.labels import LabelSet

if TYPE_CHECKING:
    from .pull import WorkDir

__all__ = ["Reward", "aggregate_labels", "completion_rewards", "poisson_binomial_pmf", "split_item"]


@dataclass
class Reward:
    completion_id: str
    mean: float  # expected share of correct lines
    low: float  # 90% interval of the share
    high: float
    line_posteriors: list[float]  # P(line correct), per line, for per-line credit


def poisson_binomial_pmf(q: np.ndarray) -> np.ndarray:
    """Row-wise pmf of the number of successes of independent Bernoulli(q[:, l]).

    >>> poisson_binomial_pmf(np.array([[0.5, 0.5]])).tolist()
    [[0.25, 0.5, 0.25]]
    """
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    k, n_lines = q.shape
    pmf = np.zeros((k, n_lines + 1))
    pmf[:, 0] = 1.0
    for col in range(n_lines):
        ql = q[:, col : col + 1]
        shifted = np.zeros_like(pmf)
        shifted[:, 1:] = pmf[:, :-1]
        pmf = pmf * (1 - ql) + shifted * ql
    return pmf


def completion_rewards(
    result: AggregationResult, line_counts: Mapping[str, int] | None = None
) -> dict[str, Reward]:
    """Rewards of every completion in ``result`` (and in ``line_counts``, if given).

    ``line_counts`` maps completion id -> number of lines; lines beyond the rated ones get
    the class prior.  Without it a completion ends at its last rated line.
    """
    rated: dict[str, dict[int, float]] = defaultdict(dict)
    for item, p in zip(result.items, result.p_correct.tolist(), strict=True):
        cid, line = split_item(item)
        rated[cid][line] = p
    counts = dict(line_counts or {})
    for cid in counts:
        rated.setdefault(cid, {})
    by_length: dict[int, list[tuple[str, list[float]]]] = defaultdict(list)
    for cid, lines in rated.items():
        n_lines = max(counts.get(cid, 0), max(lines, default=-1) + 1, 1)
        q = [lines.get(line, result.class_prior) for line in range(n_lines)]
        by_length[n_lines].append((cid, q))
    rewards: dict[str, Reward] = {}
    tail = (1 - INTERVAL) / 2
    for n_lines, group in by_length.items():
        q = np.array([g[1] for g in group])
        cdf = np.cumsum(poisson_binomial_pmf(q), axis=1)
        # smallest k with CDF(k) >= level; a small slack absorbs rounding in the sums
        low = (cdf < tail - 1e-12).sum(axis=1) / n_lines
        high = (cdf < 1 - tail - 1e-12).sum(axis=1) / n_lines
        means = q.mean(axis=1)
        # K is discrete: with near-certain lines both quantiles can land on one side of
        # the mean; widen to the mean so that low <= mean <= high always holds.
        low, high = np.minimum(low, means), np.maximum(high, means)
        for r, (cid, lines) in enumerate(group):
            rewards[cid] = Reward(cid, float(means[r]), float(low[r]), float(high[r]), lines)
    return rewards


def pulled_labels(work: WorkDir, *, implicit: bool = True) -> LabelSet:
    """The labels a pull brought into ``work``: the crowd's ratings and, with ``implicit``,
    the developers' retention verdicts as ``implicit:<name>`` pseudo-annotators (what the
    nightly run aggregates, so an export of rewards is the rewards a night trains on)."""
    from .aggregation.implicit import implicit_records, with_implicit

    labels = LabelSet.from_export(work.label_pages())
    if implicit and labels.n_labels:
        labels = with_implicit(labels, implicit_records(work.retention_rows()))
    return labels


def aggregate_labels(
    labels: LabelSet, method: str, line_counts: Mapping[str, int]
) -> tuple[AggregationResult, dict[str, Reward]]:
    """The one way an export becomes rewards: fit ``method`` on ``labels`` and return the
    fit and a reward for every rated completion that ``line_counts`` knows (the nightly
    run and the demo both call this; the demo then scores the fit against its truth)."""
    from .aggregation import aggregate

    result = aggregate(labels, method)
    rated = {split_item(item)[0] for item in labels.items}
    rewards = completion_rewards(result, line_counts)
    return result, {cid: r for cid, r in rewards.items() if cid in rated and cid in line_counts}
