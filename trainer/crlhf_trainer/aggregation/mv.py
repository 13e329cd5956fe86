"""Majority vote, the baseline.

P(line correct) is the share of 👍 among its labels (a tie gives 0.5); honeypot lines are
set to their truth.  An annotator's reliability is the share of their labels that agree
with the majority (a tie counts one half), with the 90% interval of the Beta(1 + agree,
1 + disagree) posterior.  It is one-coin: someone who clicks 👍 on everything agrees
with the majority on every correct line and looks reliable.

>>> from crlhf_trainer.aggregation.labels import LabelSet
>>> ls = LabelSet.from_records([("x", "a", 1), ("x", "b", 1), ("x", "c", -1)])
>>> result = MajorityVote().fit(ls)
>>> round(float(result.p_correct[0]), 4), [r.reliability for r in result.annotators]
(0.6667, [1.0, 1.0, 0.0])
"""

from __future__ import annotations

import numpy as np

from .base import AggregationResult, beta_interval, clamp_gold, one_coin_reliabilities
from .labels import LabelSet

__all__ = ["MajorityVote"]


class MajorityVote:
    """Share of 👍 per line; reliability = agreement with the majority."""

    name = "mv"

    def fit(self, labels: LabelSet) -> AggregationResult:
        n, m = labels.n_items, labels.n_annotators
        votes = np.bincount(labels.item_idx, minlength=n).astype(np.float64)
        ups = np.bincount(labels.item_idx, weights=labels.label > 0, minlength=n)
        p = np.divide(ups, votes, out=np.full(n, 0.5), where=votes > 0)
        clamp_gold(labels, p)
        hard = np.sign(p - 0.5)  # +1, -1, or 0 on a tie
        agree = 0.5 * (1 + hard[labels.item_idx] * labels.label)
        right = np.bincount(labels.annotator_idx, weights=agree, minlength=m)
        n_labels = np.bincount(labels.annotator_idx, minlength=m)
        pi = np.divide(right, n_labels, out=np.full(m, 0.5), where=n_labels > 0)
        low, high = beta_interval(1 + right, 1 + n_labels - right)
        free = np.ones(n, dtype=bool)
        free[list(labels.gold)] = False
        prior = float((p[free] > 0.5).mean()) if free.any() else 0.5
        return AggregationResult(
            method=self.name,
            items=list(labels.items),
            p_correct=p,
            annotators=one_coin_reliabilities(labels.annotators, pi, low, high, n_labels),
            class_prior=prior,
        )
