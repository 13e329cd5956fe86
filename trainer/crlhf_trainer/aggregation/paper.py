"""The source method (Wong & Tan 2024): honeypot reliabilities, a logit update, L1.

Posterior of a line from its labels εⱼ = ±1 and the annotators' reliabilities πⱼ:

    P(zᵢ = +1 | labels) = σ(logit p + Σ_j εᵢⱼ · logit πⱼ)

``paper`` (:class:`PaperEstimator`):

1. πⱼ from the honeypot lines the annotator rated, under a Beta(a, b) prior so that a
   few honeypots never give π = 0 or 1:  πⱼ = (a + agreedⱼ) / (a + b + ratedⱼ);
   p is the share of correct honeypot lines (add-one smoothed).
2. The paper's update over the other lines:  logit πⱼ ← logit πⱼ + λⱼ·μ·logit p̄ᵢ,
   μ = +1 when the annotator agreed with the line's current most likely truth, -1
   otherwise, p̄ᵢ = max(Pᵢ, 1 - Pᵢ) the confidence in that truth, clipped to
   ``confidence_cap`` < 1 (at p̄ = 1 a single label would move logit π infinitely).  Read
   literally (a fixed λ per label) the update drives π to 0 or 1 after enough labels, so
   λⱼ = ``step`` / (a + b + nⱼ): one sweep moves logit πⱼ by at most
   ``step``·logit(``confidence_cap``).  ``sweeps`` passes, posteriors recomputed between.

``paper-l1`` (:class:`PaperL1Estimator`): one-shot L1-regularised logistic regression of
the honeypot lines' truth on the annotators' ±1 labels (0 where an annotator did not
rate the line):

    min_{b, w}  Σ_h log(1 + exp(-tₕ (b + Σ_j xₕⱼ wⱼ))) + λ ‖w‖₁

solved with scipy.optimize (TNC, bounded truncated Newton) on w = u - v, u, v ≥ 0, the
usual smooth form of the L1 term.
The weights play the role of logit πⱼ; annotators whose weight is 0 are filtered out
(flag ``spammer``).  λ rule: 10 values from λ_max = ‖Xᵀ(t01 - mean t01)‖_∞ (the smallest λ
with every weight 0) down to λ_max/100 on a log grid; the one with the lowest AIC
(2·NLL + 2·(non-zero weights + 1)) wins.  (BIC's log #honeypots penalty was tried: with
the few honeypots per annotator of a real crowd it keeps every weight at 0.)
Reliability intervals come from the Laplace approximation at the optimum:
σ(wⱼ ± 1.645·sdⱼ).

>>> from crlhf_trainer.simulate import simulate_crowd
>>> crowd = simulate_crowd(3000, 20, {"reliable": 1.0}, honeypot_rate=0.2, seed=2)
>>> for est in (PaperEstimator(), PaperL1Estimator()):
...     r = est.fit(crowd.labels)
...     print(r.method, bool(((r.p_correct > 0.5) == (crowd.truth > 0)).mean() > 0.95))
paper True
paper-l1 True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import (
    SPAMMER_THRESHOLD,
    AggregationResult,
    beta_interval,
    clamp_gold,
    expit,
    free_class_prior,
    logit,
    one_coin_reliabilities,
    vote_log_odds,
)
from .labels import LabelSet

if TYPE_CHECKING:
    from scipy import sparse

    Matrix = np.ndarray | sparse.csr_matrix

__all__ = ["PaperEstimator", "PaperL1Estimator"]

_METHOD = "TNC"  # L-BFGS-B: same optimum, but its tiny LAPACK calls stall on BLAS threads
_Z90 = 1.6448536269514722  # standard normal 95th percentile


def _honeypot_agreement(labels: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    """Per annotator: honeypot labels that matched the truth, and honeypot labels."""
    m = labels.n_annotators
    truth = np.zeros(labels.n_items, dtype=np.int8)
    if labels.gold:
        idx, t = labels.gold_arrays()
        truth[idx] = t
    on_gold = truth[labels.item_idx]
    rated = np.bincount(labels.annotator_idx, weights=on_gold != 0, minlength=m)
    agreed = np.bincount(labels.annotator_idx, weights=on_gold == labels.label, minlength=m)
    return agreed, rated


class PaperEstimator:
    """Honeypot π with a Beta prior, then the paper's iterative logit update."""

    name = "paper"

    def __init__(
        self,
        *,
        prior_right: float = 2.0,
        prior_wrong: float = 1.0,
        step: float = 0.25,
        confidence_cap: float = 0.95,
        sweeps: int = 1,
        spammer_threshold: float = SPAMMER_THRESHOLD,
    ) -> None:
        self.prior_right = prior_right  # a
        self.prior_wrong = prior_wrong  # b
        self.step = step  # λⱼ·(a + b + nⱼ)
        self.confidence_cap = confidence_cap  # p̄ is clipped to this
        self.sweeps = sweeps
        self.spammer_threshold = spammer_threshold

    def fit(self, labels: LabelSet) -> AggregationResult:
        a, b = self.prior_right, self.prior_wrong
        m = labels.n_annotators
        agreed, rated = _honeypot_agreement(labels)
        pi = (a + agreed) / (a + b + rated)
        self.honeypot_pi_ = pi.copy()
        gold_mask = np.zeros(labels.n_items, dtype=bool)
        gold_mask[list(labels.gold)] = True
        free = ~gold_mask[labels.item_idx]  # the update runs over non-honeypot labels
        n_free = np.bincount(labels.annotator_idx[free], minlength=m)
        lam = self.step / (a + b + n_free)
        w = logit(pi)
        # the class prior is learnt on the lines being rated, never the honeypots' share
        prior = free_class_prior(labels, vote_log_odds(labels, w))
        for _ in range(self.sweeps):
            p = self._posterior(labels, w, prior)
            conf = np.minimum(np.maximum(p, 1 - p), self.confidence_cap)
            sign = np.where(p >= 0.5, 1, -1)
            mu = np.where(sign[labels.item_idx] == labels.label, 1.0, -1.0)
            step = (mu * logit(conf)[labels.item_idx])[free]
            w = w + lam * np.bincount(labels.annotator_idx[free], weights=step, minlength=m)
        prior = free_class_prior(labels, vote_log_odds(labels, w))
        p = self._posterior(labels, w, prior)
        self.logit_pi_ = w
        pi = expit(w)
        # The interval of π: the honeypot Beta posterior, shifted by the update in logit space.
        lo, hi = beta_interval(a + agreed, b + rated - agreed)
        shift = w - logit(self.honeypot_pi_)
        low, high = expit(logit(lo) + shift), expit(logit(hi) + shift)
        n_labels = np.bincount(labels.annotator_idx, minlength=m)
        return AggregationResult(
            method=self.name,
            items=list(labels.items),
            p_correct=p,
            annotators=one_coin_reliabilities(
                labels.annotators, pi, low, high, n_labels, self.spammer_threshold
            ),
            class_prior=prior,
        )

    @staticmethod
    def _posterior(labels: LabelSet, w: np.ndarray, prior: float) -> np.ndarray:
        return clamp_gold(labels, expit(logit(prior) + vote_log_odds(labels, w)))


class PaperL1Estimator:
    """One-shot L1 logistic regression of honeypot truth on the annotators' labels."""

    name = "paper-l1"

    def __init__(
        self,
        *,
        n_lambdas: int = 10,
        lambda_ratio: float = 0.01,
        spammer_threshold: float = SPAMMER_THRESHOLD,
    ) -> None:
        self.n_lambdas = n_lambdas  # size of the λ grid searched by AIC
        self.lambda_ratio = lambda_ratio  # smallest λ on the grid, relative to λ_max
        self.spammer_threshold = spammer_threshold

    def fit(self, labels: LabelSet) -> AggregationResult:
        from scipy import sparse  # lazily, like every scipy import on the CLI's path

        m = labels.n_annotators
        gold_idx, truth = labels.gold_arrays()
        row_of = np.full(labels.n_items, -1, dtype=np.int64)
        row_of[gold_idx] = np.arange(len(gold_idx))
        rows = row_of[labels.item_idx]
        on = rows >= 0
        x = sparse.csr_matrix(
            (labels.label[on].astype(np.float64), (rows[on], labels.annotator_idx[on])),
            shape=(len(gold_idx), m),
        )
        if x.shape[0] * x.shape[1] <= 4_000_000:
            x = x.toarray()  # small enough: dense products are several times faster
        t = truth.astype(np.float64)
        b, w, lam = self._fit_path(x, t)
        self.lambda_, self.intercept_, self.coef_ = lam, b, w
        self.filtered_ = [name for name, wj in zip(labels.annotators, w, strict=True) if wj == 0]
        # The intercept b is the honeypots' prevalence (and the regression's offset): the
        # posterior of the rated lines takes their own prior instead (free_class_prior).
        evidence = vote_log_odds(labels, w)
        prior = free_class_prior(labels, evidence)
        p = clamp_gold(labels, expit(logit(prior) + evidence))
        sd = self._laplace_sd(x, b, w)
        pi = expit(w)
        n_labels = np.bincount(labels.annotator_idx, minlength=m)
        return AggregationResult(
            method=self.name,
            items=list(labels.items),
            p_correct=p,
            annotators=one_coin_reliabilities(
                labels.annotators,
                pi,
                expit(w - _Z90 * sd),
                expit(w + _Z90 * sd),
                n_labels,
                self.spammer_threshold,
            ),
            class_prior=prior,
        )

    def _fit_path(self, x: Matrix, t: np.ndarray) -> tuple[float, np.ndarray, float]:
        n, m = x.shape
        if n == 0:
            return 0.0, np.zeros(m), 0.0
        t01 = (t > 0).astype(np.float64)
        lam_max = float(np.abs(x.T @ (t01 - t01.mean())).max(initial=0.0))
        if lam_max == 0.0:
            return float(logit(t01.mean())), np.zeros(m), 0.0
        grid = lam_max * np.geomspace(1.0, self.lambda_ratio, self.n_lambdas)
        best = None
        start = np.zeros(1 + 2 * m)
        for lam in grid:
            start = self._solve(x, t, lam, start)  # warm start along the path
            b, w = start[0], start[1 : m + 1] - start[m + 1 :]
            w = np.where(np.abs(w) < 1e-6, 0.0, w)
            nll = float(np.logaddexp(0, -t * (b + x @ w)).sum())
            aic = 2 * nll + 2 * (np.count_nonzero(w) + 1)
            if best is None or aic < best[0]:
                best = (aic, float(b), w, float(lam))
        return best[1], best[2], best[3]

    @staticmethod
    def _solve(x, t, lam, start):
        from scipy.optimize import minimize

        m = x.shape[1]

        def objective(theta):
            b, u, v = theta[0], theta[1 : m + 1], theta[m + 1 :]
            margin = t * (b + x @ (u - v))
            # d/dmargin log(1 + e^-margin) = -σ(-margin)
            g = -t * expit(-margin)
            gw = x.T @ g
            grad = np.concatenate([[g.sum()], gw + lam, -gw + lam])
            return np.logaddexp(0, -margin).sum() + lam * (u.sum() + v.sum()), grad

        bounds = [(None, None)] + [(0, None)] * (2 * m)
        res = minimize(objective, start, jac=True, method=_METHOD, bounds=bounds)
        return res.x

    @staticmethod
    def _laplace_sd(x, b, w) -> np.ndarray:
        """Posterior sd of each weight: inverse Hessian on the active set, 1/√Hⱼⱼ elsewhere."""
        from scipy import sparse

        m = x.shape[1]
        if x.shape[0] == 0:
            return np.full(m, 10.0)
        s = expit(b + x @ w)
        if sparse.issparse(x):
            h = (x.T @ sparse.diags(s * (1 - s)) @ x).toarray()
        else:
            h = (x * (s * (1 - s))[:, None]).T @ x
        h = h + 1e-6 * np.eye(m)
        sd = 1.0 / np.sqrt(np.diag(h))
        active = np.flatnonzero(w)
        if active.size:
            cov = np.linalg.pinv(h[np.ix_(active, active)])
            sd[active] = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
        return np.minimum(sd, 10.0)
