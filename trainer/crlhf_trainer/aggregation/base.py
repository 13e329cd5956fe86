"""What every estimator returns, and the small pieces of math they share.

An estimator is a class with its hyperparameters at construction and
``fit(labels: LabelSet) -> AggregationResult``.  The result holds, per item, the posterior
P(correct | all labels) and, per annotator, a reliability π (probability that a label is
right) with a 90% interval, the spammer score of Raykar & Yu (2011) and a flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .beta import beta_ppf
from .labels import LabelSet

__all__ = [
    "AggregationResult",
    "AnnotatorReliability",
    "Estimator",
    "beta_interval",
    "expit",
    "flag_annotator",
    "logit",
]

#: ``|sensitivity + specificity - 1|`` below this: the labels carry (almost) no information.
SPAMMER_THRESHOLD = 0.2
#: Probability mass outside the reported intervals (a 90% interval).
INTERVAL = 0.90


@dataclass
class AnnotatorReliability:
    """One annotator's measured quality."""

    annotator: str
    reliability: float  # π: probability that one of this annotator's labels is right
    low: float  # 90% interval of π
    high: float
    spammer_score: float  # |sensitivity + specificity - 1| (|2π - 1| for one-coin models)
    flag: str  # "ok" | "spammer" | "adversary"
    sensitivity: float | None  # P(label +1 | line correct), two-coin models only
    specificity: float | None  # P(label -1 | line wrong), two-coin models only
    n_labels: int


@dataclass
class AggregationResult:
    """Posteriors per item and reliabilities per annotator."""

    method: str
    items: list[str]
    p_correct: np.ndarray  # float64, P(item correct | labels), one per item
    annotators: list[AnnotatorReliability]
    class_prior: float  # P(a line is correct) before any label

    def posterior(self, item: str) -> float:
        """P(correct) of one item by name (a linear scan; use ``p_correct`` in bulk)."""
        return float(self.p_correct[self.items.index(item)])

    def reliability(self, annotator: str) -> AnnotatorReliability:
        for r in self.annotators:
            if r.annotator == annotator:
                return r
        raise KeyError(annotator)


class Estimator(Protocol):
    name: str

    def fit(self, labels: LabelSet) -> AggregationResult: ...


def logit(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)), clipped away from ±∞.

    >>> float(logit(0.5)), round(float(logit(0.9)), 4)
    (0.0, 2.1972)
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def beta_interval(a: np.ndarray, b: np.ndarray, mass: float = INTERVAL):
    """Central ``mass`` interval of Beta(a, b), elementwise (quantiles from :mod:`.beta`,
    which spares the process scipy.special's import).

    >>> lo, hi = beta_interval(np.array([1.0]), np.array([1.0]))
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.05, 0.95)
    """
    tail = (1.0 - mass) / 2.0
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    # both ends in one call: the quantile's steps are numpy calls on tiny arrays
    ends = np.repeat([tail, 1.0 - tail], a.size)
    both = beta_ppf(np.tile(a.ravel(), 2), np.tile(b.ravel(), 2), ends)
    return both[: a.size].reshape(a.shape), both[a.size :].reshape(a.shape)


def moment_beta_interval(mean: np.ndarray, var: np.ndarray, mass: float = INTERVAL):
    """Interval of the Beta distribution with the given mean and variance.

    Used for quantities that are combinations of Beta variables (two-coin accuracy
    π = p·α + (1-p)·β): the Beta matched to their first two moments stays inside [0, 1].
    """
    mean = np.clip(mean, 1e-9, 1 - 1e-9)
    var = np.clip(var, 1e-12, mean * (1 - mean) * (1 - 1e-9))
    k = mean * (1 - mean) / var - 1.0
    return beta_interval(mean * k, (1 - mean) * k, mass)


def flag_annotator(score_signed: float, threshold: float = SPAMMER_THRESHOLD) -> str:
    """Flag from ``sensitivity + specificity - 1`` (or ``2π - 1``).

    Near 0 the labels are independent of the truth (random clicks, always-👍): "spammer".
    Clearly negative: labels anti-correlated with the truth: "adversary".

    >>> [flag_annotator(s) for s in (0.8, 0.05, -0.6)]
    ['ok', 'spammer', 'adversary']
    """
    if score_signed <= -threshold:
        return "adversary"
    if abs(score_signed) < threshold:
        return "spammer"
    return "ok"


def one_coin_reliabilities(
    names: list[str],
    pi: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    n_labels: np.ndarray,
    threshold: float = SPAMMER_THRESHOLD,
) -> list[AnnotatorReliability]:
    """Reliability records for one-coin models (π only, no sensitivity/specificity)."""
    out = []
    for j, name in enumerate(names):
        signed = 2.0 * float(pi[j]) - 1.0
        out.append(
            AnnotatorReliability(
                annotator=name,
                reliability=float(pi[j]),
                low=float(low[j]),
                high=float(high[j]),
                spammer_score=abs(signed),
                flag=flag_annotator(signed, threshold),
                sensitivity=None,
                specificity=None,
                n_labels=int(n_labels[j]),
            )
        )
    return out


def clamp_gold(labels: LabelSet, p: np.ndarray) -> np.ndarray:
    """Set honeypot items' posteriors to their known truth (in place) and return ``p``."""
    if labels.gold:
        idx, truth = labels.gold_arrays()
        p[idx] = (truth > 0).astype(np.float64)
    return p


def vote_log_odds(labels: LabelSet, weight: np.ndarray) -> np.ndarray:
    """Σ over each item's labels of ``ε · weight[annotator]`` (ε = ±1): one bincount pass."""
    w = weight[labels.annotator_idx] * labels.label
    return np.bincount(labels.item_idx, weights=w, minlength=labels.n_items)


def expit(x: np.ndarray | float) -> np.ndarray:
    """The logistic function σ(x) = 1 / (1 + e^-x), written with tanh so it never overflows.

    >>> expit(np.array([-800.0, 0.0, 800.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def free_class_prior(labels: LabelSet, evidence: np.ndarray, iterations: int = 100) -> float:
    """P(line correct) learnt on the non-honeypot lines, given each line's vote log-odds.

    Honeypots are chosen by the team (two thirds of the demo's are mutated), so their
    prevalence says nothing about the lines developers rate: on the demo's lines the
    honeypots were 86–91 % correct and the real lines 3 %. The prior is the fixed point of
    the EM update over the free lines, with a Beta(1, 1) pseudo-count::

        p ← (1 + Σ_{i free} σ(logit p + e_i)) / (2 + n_free)

    which is monotone in ``p`` and converges from any start in a few dozen steps.

    >>> ls = LabelSet.from_records([("x", "a", -1), ("y", "a", -1), ("z", "a", 1)])
    >>> round(free_class_prior(ls, vote_log_odds(ls, np.array([2.0]))), 2)
    0.4
    """
    free = np.ones(labels.n_items, dtype=bool)
    free[list(labels.gold)] = False
    e = np.asarray(evidence, dtype=np.float64)[free]
    p = 0.5
    for _ in range(iterations):
        new = (1.0 + expit(logit(p) + e).sum()) / (2.0 + e.size)
        if abs(new - p) < 1e-9:
            break
        p = float(new)
    return float(p)
