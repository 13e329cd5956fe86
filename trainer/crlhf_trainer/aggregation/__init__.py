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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import AggregationResult, AnnotatorReliability
    from .em2 import TwoCoinEM
    from .labels import LabelSet
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

# Names load on first use (PEP 562): the trainer's errors import aggregation.errors, and
# `crlhf-train --help` must not pay for numpy to print its usage.
_LAZY = {
    "AggregationResult": ".base",
    "AnnotatorReliability": ".base",
    "TwoCoinEM": ".em2",
    "LabelSet": ".labels",
    "MajorityVote": ".mv",
    "PaperEstimator": ".paper",
    "PaperL1Estimator": ".paper",
}
_METHODS = {"em2": "TwoCoinEM", "paper": "PaperEstimator", "paper-l1": "PaperL1Estimator"}
_METHODS["mv"] = "MajorityVote"


def __getattr__(name: str) -> Any:
    if name == "ESTIMATORS":
        return {m: __getattr__(cls) for m, cls in _METHODS.items()}
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def aggregate(labels: LabelSet, method: str = "em2", **params: Any) -> AggregationResult:
    """Fit the estimator named ``method`` (with ``params``) on ``labels``."""
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(_METHODS)}")
    return __getattr__(_METHODS[method])(**params).fit(labels)
