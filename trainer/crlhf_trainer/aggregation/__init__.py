"""Label aggregation: from many noisy per-line ratings to P(line correct).

Estimators (each a class with ``fit(labels) -> AggregationResult``):

- ``em2``: two-coin Dawid–Skene EM, honeypots clamped, online updates (the default)
- ``paper``: the source method, honeypot reliabilities and its iterative logit update
- ``paper-l1``: the source method's sparse (L1) logistic regression on the honeypots
- ``mv``: majority vote, the baseline

>>> from crlhf_trainer.aggregation.labels import LabelSet
>>> ls = LabelSet.from_records([("x", "a", 1), ("x", "b", 1), ("y", "a", -1)])
>>> aggregate(ls, "mv").p_correct.tolist()
[1.0, 0.0]
"""

from __future__ import annotations

from .labels import LabelSet
from .base import AggregationResult, AnnotatorReliability
from .em2 import TwoCoinEM
from .mv import MajorityVote
from .paper import PaperEstimator, PaperL1Estimator

__all__ = [
    "ESTIMATORS",
    "AggregationResult",
    "AnnotatorReliability",
    "MajorityVote",
    "PaperEstimator",
    "PaperL1Estimator",
    "TwoCoinEM",
    "aggregate",
]

ESTIMATORS: dict[str, type] = {
    "em2": TwoCoinEM,
    "paper": PaperEstimator,
    "paper-l1": PaperL1Estimator,
    "mv": MajorityVote,
}


def aggregate(labels: LabelSet, method: str = "em2", **params) -> AggregationResult:
    """Fit the estimator named ``method`` (with ``params``) on ``labels``."""
    try:
        cls = ESTIMATORS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(ESTIMATORS)}") from None
    return cls(**params).fit(labels)
