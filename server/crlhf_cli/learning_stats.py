"""The learning benchmark's statistics: intervals over items and seeds, recovery, accuracy.

Each (arm, seed) run gives one improvement per held-out item, ``d = −(m_arm − m_base)``
(:mod:`crlhf_cli.learning`): positive when training made rule-breaking lines less likely
than conforming ones. Arms share items and seeds, so every comparison is paired. The
interval of a mean is a two-level bootstrap: resample the seeds, then the items (the
crowd, the training and the items all vary between nights), 90 %, percentiles.

Recovery says how much of what perfect labels would teach a crowd's labels teach::

    R = (mean d_arm − mean d_random) / (mean d_truth − mean d_random)

0 is no better than credit with no information (em2's posteriors shuffled across lines),
1 is as good as the truth itself. Its interval comes from the same paired resamples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "LineScores", "line_scores", "mean_interval", "recovery"]

CONFIDENCE = 0.90


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _resample_means(
    runs: Mapping[str, np.ndarray], resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Per arm, ``resamples`` bootstrap means of a [seeds, items] array (shared draws)."""
    shapes = {a.shape for a in runs.values()}
    if len(shapes) != 1:
        raise ValueError(f"arms must share seeds and items to be paired; got shapes {shapes}")
    (n_seeds, n_items) = shapes.pop()
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    i = rng.integers(0, n_items, size=(resamples, n_items))
    out = {}
    for arm, x in runs.items():
        # mean over resampled seeds of the mean over resampled items
        by_seed = x[:, i]  # [seeds, resamples, items]
        per = by_seed.mean(axis=2)  # [seeds, resamples]
        out[arm] = per[s, np.arange(resamples)[:, None]].mean(axis=1)
    return out


def _interval(point: float, draws: np.ndarray) -> Interval:
    tail = (1 - CONFIDENCE) / 2
    lo, hi = np.nanquantile(draws, [tail, 1 - tail])
    return Interval(float(point), float(lo), float(hi))


def mean_interval(x: Sequence[Sequence[float]], resamples: int = 2000, seed: int = 0) -> Interval:
    """Mean of a [seeds][items] table with its two-level bootstrap interval.

    >>> iv = mean_interval([[1.0, 1.0], [1.0, 1.0]])
    >>> (iv.mean, iv.low, iv.high)
    (1.0, 1.0, 1.0)
    """
    arr = np.asarray(x, dtype=float)
    draws = _resample_means({"x": arr}, resamples, seed)["x"]
    return _interval(float(arr.mean()), draws)


def paired_difference(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """mean(a) − mean(b) on the same seeds and items, with its interval."""
    arr_a, arr_b = np.asarray(a, float), np.asarray(b, float)
    return mean_interval(arr_a - arr_b, resamples, seed)


def recovery(
    arm: Sequence[Sequence[float]],
    random: Sequence[Sequence[float]],
    truth: Sequence[Sequence[float]],
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """R of the module docstring with its paired interval (NaN when truth ≈ random).

    >>> r = recovery([[0.5, 0.5]], [[0.0, 0.0]], [[1.0, 1.0]])
    >>> (r.mean, r.low, r.high)
    (0.5, 0.5, 0.5)
    """
    runs = {"arm": np.asarray(arm, float), "rnd": np.asarray(random, float)}
    runs["truth"] = np.asarray(truth, float)
    draws = _resample_means(runs, resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (draws["arm"] - draws["rnd"]) / (draws["truth"] - draws["rnd"])
    point_den = runs["truth"].mean() - runs["rnd"].mean()
    point = (runs["arm"].mean() - runs["rnd"].mean()) / point_den if point_den else np.nan
    return _interval(float(point), ratio[np.isfinite(ratio)] if np.isfinite(ratio).any() else ratio)


@dataclass(frozen=True)
class LineScores:
    """How well posteriors tell right lines from wrong ones, beside the dumb baselines."""

    n: int
    accuracy: float
    constant: float  # accuracy of always answering the majority class
    balanced: float  # mean of the accuracy on right lines and on wrong lines
    auc: float  # P(a random right line scores above a random wrong one)
    brier: float  # mean (p − truth)², truth in {0, 1}

    def row(self) -> str:
        return (
            f"acc {self.accuracy:.1%} (constant {self.constant:.1%}) · balanced "
            f"{self.balanced:.1%} · AUC {self.auc:.3f} · Brier {self.brier:.3f} (n={self.n})"
        )


def line_scores(p: Sequence[float], truth: Sequence[int]) -> LineScores:
    """Accuracy, constant baseline, balanced accuracy, AUC and Brier score.

    >>> s = line_scores([0.9, 0.8, 0.2, 0.6], [1, 1, -1, -1])
    >>> (s.accuracy, s.constant, s.balanced, s.auc)
    (0.75, 0.5, 0.75, 1.0)
    """
    from scipy.stats import rankdata

    p_arr, t = np.asarray(p, float), np.asarray(truth) > 0
    pred = p_arr > 0.5
    pos, neg = t.sum(), (~t).sum()
    acc_pos = float((pred & t).sum() / pos) if pos else float("nan")
    acc_neg = float((~pred & ~t).sum() / neg) if neg else float("nan")
    if pos and neg:
        ranks = rankdata(p_arr)
        auc = float((ranks[t].sum() - pos * (pos + 1) / 2) / (pos * neg))
    else:
        auc = float("nan")
    return LineScores(
        n=len(t),
        accuracy=float((pred == t).mean()) if len(t) else float("nan"),
        constant=float(max(pos, neg) / len(t)) if len(t) else float("nan"),
        balanced=float(np.nanmean([acc_pos, acc_neg])),
        auc=auc,
        brier=float(((p_arr - t) ** 2).mean()) if len(t) else float("nan"),
    )
