"""Two-coin Dawid–Skene EM with Beta priors, honeypots clamped, and online updates.

Model (Dawid & Skene 1979; the two-coin form of Raykar et al. 2010, JMLR 11): each line
``i`` is correct (zᵢ = +1) with probability ``p``; annotator ``j`` says +1 on a correct line
with probability αⱼ (sensitivity) and -1 on a wrong line with probability βⱼ
(specificity).  Given the parameters, the posterior of a line is

    logit P(zᵢ = +1 | labels) = logit p + Σ_{j labelled i} wⱼ(yᵢⱼ)
    wⱼ(+1) = log αⱼ - log(1 - βⱼ)        wⱼ(-1) = log(1 - αⱼ) - log βⱼ

(the source method's Σ εⱼ·logit πⱼ is the special case αⱼ = βⱼ = πⱼ).  EM alternates
that E-step with the M-step, the MAP estimates under Beta priors (pseudo-counts ``a``
for "right", ``b`` for "wrong") from soft counts, qᵢ = P(zᵢ = +1):

    αⱼ = (a + Σ_{yᵢⱼ=+1} qᵢ) / (a + b + Σ_i qᵢ)
    βⱼ = (a + Σ_{yᵢⱼ=-1} (1-qᵢ)) / (a + b + Σ_i (1-qᵢ))
    p  = (c + Σ_{i not honeypot} qᵢ) / (2c + #non-honeypot lines)

Honeypot lines are clamped to their truth (qᵢ ∈ {0, 1}) in every E-step, and the first
parameters come from the honeypots alone, so EM starts on the right side: a crowd with
many adversaries cannot pull it into the mirror solution (every label flipped).  Each
pass is two matrix-vector products over the labels (see :mod:`.design`).

An annotator's single reliability is the accuracy on a random line, π = p·α + (1-p)·β;
its 90% interval comes from the Beta posteriors of α, β and p plus the uncertainty of
the truth of the lines the annotator rated (delta method for the variance, then the
Beta with that mean and variance).  The
spammer score is |α + β - 1|: 0 for anyone whose labels ignore the truth (random
clicks, always-👍), negative α + β - 1 marks an adversary.

**Online.** :meth:`TwoCoinEM.partial_fit` absorbs a batch of new labels in time
proportional to the batch: the batch's labels are added to their lines' log-odds with
the current weights, those lines' posteriors are recomputed, and the batch's soft counts
are added to its annotators' counts.  Labels seen earlier keep the soft counts they had,
so the estimate drifts from a full refit as batches pile up.  Refit rule
(:attr:`TwoCoinEM.needs_refit`): refit when the labels absorbed since the last full fit
exceed ``refit_fraction`` (20%) of the labels of that fit, or when an annotator's
reliability has moved by more than ``refit_drift`` (0.05) since it.

>>> from crlhf_trainer.simulate import simulate_crowd
>>> crowd = simulate_crowd(2000, 30, {"reliable": 0.7, "adversary": 0.3}, seed=1)
>>> result = TwoCoinEM().fit(crowd.labels)
>>> accuracy = ((result.p_correct > 0.5) == (crowd.truth > 0)).mean()
>>> bool(accuracy > 0.9)
True
>>> sorted({r.flag for r, kind in zip(result.annotators, crowd.annotator_kind)
...         if kind == "adversary"})
['adversary']
"""

from __future__ import annotations

import numpy as np

from .base import (
    SPAMMER_THRESHOLD,
    AggregationResult,
    AnnotatorReliability,
    expit,
    flag_annotator,
    logit,
    moment_beta_interval,
)
from .design import Design
from .labels import LabelSet

__all__ = ["TwoCoinEM"]


class TwoCoinEM:
    """Two-coin Dawid–Skene EM (see the module docstring for the math)."""

    name = "em2"

    def __init__(
        self,
        *,
        prior_right: float = 2.0,
        prior_wrong: float = 1.0,
        class_prior_strength: float = 1.0,
        max_iter: int = 200,
        tol: float = 1e-5,
        spammer_threshold: float = SPAMMER_THRESHOLD,
        refit_fraction: float = 0.2,
        refit_drift: float = 0.05,
    ) -> None:
        self.prior_right = prior_right  # Beta pseudo-count a: labels that were right
        self.prior_wrong = prior_wrong  # Beta pseudo-count b: labels that were wrong
        self.class_prior_strength = class_prior_strength  # c, pseudo-lines of each class
        self.max_iter = max_iter
        self.tol = tol  # stop when no α or β moves more than this in one pass
        self.spammer_threshold = spammer_threshold
        self.refit_fraction = refit_fraction
        self.refit_drift = refit_drift

    # ---------------------------------------------------------------- full fit
    def fit(self, labels: LabelSet) -> AggregationResult:
        """Run EM to convergence on ``labels``; returns :meth:`result`."""
        self._labels = labels
        self._batches: list[LabelSet] = []
        design = Design(labels)
        n_pos, n_neg = np.split(design.column_counts(), 2)
        q, evidence, counts, q_free_sum, n_free = self._em(labels, design, n_pos, n_neg)
        self.items_ = labels.items  # shared until partial_fit needs its own copy
        self.annotators_ = labels.annotators
        self._item_index: dict[str, int] | None = None  # built by the first partial_fit
        self._annotator_index: dict[str, int] | None = None
        self.gold_ = dict(labels.gold)
        self.evidence_ = evidence
        self.p_correct_ = q
        self.counts_ = np.stack(counts, axis=1)  # per annotator: TP FN FP TN
        self.n_labels_ = (n_pos + n_neg).astype(np.int64)
        # Σ q(1-q) over each annotator's labels: how much of their record rests on lines
        # whose truth is itself uncertain (widens the reliability interval, see result())
        self.unsure_ = np.add(*np.split(design.tdot(q * (1 - q)), 2))
        self._q_free_sum = q_free_sum
        self._n_free = n_free
        self.class_prior_ = self._class_prior(self._q_free_sum, n_free)
        self._n_fitted = labels.n_labels
        self._n_seen_items = labels.n_items
        self._n_absorbed = 0
        self._fitted_reliability = self._reliability_point()
        return self.result()

    def _em(self, labels: LabelSet, design: Design, n_pos, n_neg) -> tuple:
        """EM from the honeypots: ``(q, evidence, (TP, FN, FP, TN), Σq free, n free)``."""
        n = labels.n_items
        gold_idx, gold_truth = labels.gold_arrays()
        gold_q = (gold_truth > 0).astype(np.float64)
        n_free = n - len(gold_idx)
        gold_q_sum = float(gold_q.sum())

        def m_step(q: np.ndarray):
            # soft counts: TP, FN = Σ q over each annotator's +1 and -1 labels
            tp, fn = np.split(design.tdot(q), 2)
            return tp, fn, n_pos - tp, n_neg - fn

        def e_step(alpha, beta, prior):
            evidence = design.dot(np.concatenate(_weights(alpha, beta)))
            q = expit(logit(prior) + evidence)
            q[gold_idx] = gold_q
            return q, evidence

        # Start from the honeypots: soft counts of the gold lines only.
        q = np.zeros(n)
        q[gold_idx] = gold_q
        on_gold = np.zeros(n)
        on_gold[gold_idx] = 1.0
        tp, fn = np.split(design.tdot(q), 2)
        fp, tn = np.split(design.tdot(on_gold), 2)
        alpha, beta = self._coins(tp, fn, fp - tp, tn - fn)
        prior = self._class_prior(gold_q.sum(), len(gold_q))
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - reported as n_iter_
            q, evidence = e_step(alpha, beta, prior)
            tp, fn, fp, tn = m_step(q)
            prior = self._class_prior(q.sum() - gold_q_sum, n_free)
            new_alpha, new_beta = self._coins(tp, fn, fp, tn)
            moved = np.abs(np.concatenate([new_alpha - alpha, new_beta - beta])).max(initial=0)
            alpha, beta = new_alpha, new_beta
            if moved < self.tol:
                break
        self.n_iter_ = n_iter
        # A last M-step then E-step, so that the reported α, β, p (from these counts) are
        # exactly the parameters of the reported posteriors.
        q, _ = e_step(alpha, beta, prior)
        tp, fn, fp, tn = m_step(q)
        q_free_sum = float(q.sum()) - gold_q_sum
        alpha, beta = self._coins(tp, fn, fp, tn)
        q, evidence = e_step(alpha, beta, self._class_prior(q_free_sum, n_free))
        return q, evidence, (tp, fn, fp, tn), q_free_sum, n_free

    def _coins(self, tp, fn, fp, tn) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.prior_right, self.prior_wrong
        return (a + tp) / (a + b + tp + fn), (a + tn) / (a + b + tn + fp)

    def _class_prior(self, q_sum: float, n: int) -> float:
        c = self.class_prior_strength
        return float((c + q_sum) / (2 * c + n))

    # ---------------------------------------------------------------- results
    @property
    def alpha_(self) -> np.ndarray:
        """Sensitivity per annotator, P(label +1 | line correct)."""
        tp, fn, fp, tn = self.counts_.T
        return self._coins(tp, fn, fp, tn)[0]

    @property
    def beta_(self) -> np.ndarray:
        """Specificity per annotator, P(label -1 | line wrong)."""
        tp, fn, fp, tn = self.counts_.T
        return self._coins(tp, fn, fp, tn)[1]

    def _reliability_point(self) -> np.ndarray:
        p = self.class_prior_
        return p * self.alpha_ + (1 - p) * self.beta_

    def result(self) -> AggregationResult:
        """The current posteriors and reliabilities as an :class:`AggregationResult`."""
        a, b = self.prior_right, self.prior_wrong
        tp, fn, fp, tn = self.counts_.T
        p = self.class_prior_
        alpha, beta = self._coins(tp, fn, fp, tn)
        pi = p * alpha + (1 - p) * beta
        # Var of a Beta(x, y) posterior: mean (1 - mean) / (x + y + 1)
        var_a = alpha * (1 - alpha) / (a + b + tp + fn + 1)
        var_b = beta * (1 - beta) / (a + b + tn + fp + 1)
        # π = p·α + (1-p)·β with p, α, β independent: the delta method's variance
        var_p = p * (1 - p) / (2 * self.class_prior_strength + self._n_free + 1)
        var_pi = p * p * var_a + (1 - p) ** 2 * var_b + (alpha - beta) ** 2 * var_p
        # The soft counts are not observed counts: whether a label on a line with posterior
        # q was right is itself a Bernoulli(q) draw, adding Σ q(1-q) / n² to Var(π).
        var_pi += self.unsure_ / (a + b + self.n_labels_) ** 2
        low, high = moment_beta_interval(pi, var_pi)
        annotators = []
        for j, name in enumerate(self.annotators_):
            signed = float(alpha[j] + beta[j] - 1)
            annotators.append(
                AnnotatorReliability(
                    annotator=name,
                    reliability=float(pi[j]),
                    low=float(min(low[j], pi[j])),
                    high=float(max(high[j], pi[j])),
                    spammer_score=abs(signed),
                    flag=flag_annotator(signed, self.spammer_threshold),
                    sensitivity=float(alpha[j]),
                    specificity=float(beta[j]),
                    n_labels=int(self.n_labels_[j]),
                )
            )
        return AggregationResult(
            method=self.name,
            items=self.items_ if self._item_index is None else list(self.items_),
            p_correct=self.p_correct_[: len(self.items_)].copy(),
            annotators=annotators,
            class_prior=p,
        )

    # ---------------------------------------------------------------- online
    @property
    def needs_refit(self) -> bool:
        """True when the online estimate may have drifted from a full refit (see module)."""
        if self._n_absorbed > self.refit_fraction * self._n_fitted:
            return True
        now = self._reliability_point()
        before = self._fitted_reliability
        k = len(before)
        return bool(np.any(np.abs(now[:k] - before) > self.refit_drift))

    def partial_fit(self, batch: LabelSet) -> TwoCoinEM:
        """Absorb new labels (and new honeypot truths) in time proportional to the batch.

        Names in ``batch`` are matched to the fitted items and annotators; new ones are
        added.  Honeypot truths come in ``batch.gold`` (which, like any LabelSet's, holds
        only lines the batch labels).  A label for an (item, annotator) pair already
        absorbed counts as one more label until the next :meth:`refit`.
        """
        if self._item_index is None:
            self.items_, self.annotators_ = list(self.items_), list(self.annotators_)
            self._item_index = {name: i for i, name in enumerate(self.items_)}
            self._annotator_index = {name: j for j, name in enumerate(self.annotators_)}
        # Only the names the batch's labels use: its vocabulary may be much larger.
        item_map = self._extend(self.items_, self._item_index, batch.items, batch.item_idx)
        ann_map = self._extend(
            self.annotators_, self._annotator_index, batch.annotators, batch.annotator_idx
        )
        self._grow_items(len(self.items_))
        self._grow_annotators(len(self.annotators_))
        items = item_map[batch.item_idx]
        anns = ann_map[batch.annotator_idx]
        self._absorb_gold(batch, item_map)
        touched, inverse = np.unique(items, return_inverse=True)
        q = self._update_posteriors(batch, anns, touched, inverse)
        pos = batch.label > 0
        delta = np.stack([q * pos, q * ~pos, (1 - q) * pos, (1 - q) * ~pos], axis=1)
        np.add.at(self.counts_, anns, delta)
        np.add.at(self.n_labels_, anns, 1)
        np.add.at(self.unsure_, anns, q * (1 - q))
        self.class_prior_ = self._class_prior(self._q_free_sum, self._n_free)
        self._n_absorbed += batch.n_labels
        self._batches.append(
            LabelSet(
                self.items_,
                self.annotators_,
                items.astype(np.int32),
                anns.astype(np.int32),
                batch.label,
                {},
            )
        )
        return self

    def _absorb_gold(self, batch: LabelSet, item_map: np.ndarray) -> None:
        """The batch's honeypot truths: a line seen before leaves the free lines."""
        for i, truth in batch.gold.items():
            gi = int(item_map[i]) if item_map[i] >= 0 else self._item_index.get(batch.items[i])
            if gi is None:
                continue  # a honeypot nobody has labelled yet
            if gi < self._n_seen_items and gi not in self.gold_:
                self._q_free_sum -= self.p_correct_[gi]
                self._n_free -= 1
                self.p_correct_[gi] = 1.0 if truth > 0 else 0.0
            self.gold_[gi] = truth

    def _update_posteriors(
        self, batch: LabelSet, anns: np.ndarray, touched: np.ndarray, inverse: np.ndarray
    ) -> np.ndarray:
        """An E-step on the lines the batch touches; each label's line posterior."""
        new_items = touched[touched >= self._n_seen_items]
        self._n_free += int(sum(1 for i in new_items.tolist() if i not in self.gold_))
        alpha, beta = self._coins(*self.counts_[anns].T)
        w_pos, w_neg = _weights(alpha, beta)
        w = np.where(batch.label > 0, w_pos, w_neg)
        self.evidence_[touched] += np.bincount(inverse, weights=w, minlength=len(touched))

        q_old = self.p_correct_[touched]
        q_new = expit(logit(self.class_prior_) + self.evidence_[touched])
        is_gold = np.array([int(i) in self.gold_ for i in touched.tolist()], dtype=bool)
        q_new[is_gold] = [1.0 if self.gold_[int(i)] > 0 else 0.0 for i in touched[is_gold]]
        was_seen = touched < self._n_seen_items
        free_seen = was_seen & ~is_gold
        self._q_free_sum += float((q_new - q_old)[free_seen].sum())
        self._q_free_sum += float(q_new[~was_seen & ~is_gold].sum())
        self.p_correct_[touched] = q_new
        self._n_seen_items = len(self.items_)
        return q_new[inverse]

    def refit(self) -> AggregationResult:
        """A full fit on every label seen so far (the fitted set plus all batches)."""
        parts = [self._labels, *self._batches]
        merged = LabelSet(
            list(self.items_),
            list(self.annotators_),
            np.concatenate([p.item_idx for p in parts]),
            np.concatenate([p.annotator_idx for p in parts]),
            np.concatenate([p.label for p in parts]),
            dict(self.gold_),
        )
        return self.fit(merged)

    @staticmethod
    def _extend(names: list[str], index: dict[str, int], new: list[str], used: np.ndarray):
        """Map ``new[k]`` for every k in ``used`` to our index (appending unknown names);
        -1 for names the batch does not use."""
        out = np.full(len(new), -1, dtype=np.intp)
        for k in np.unique(used).tolist():
            j = index.get(new[k])
            if j is None:
                j = index[new[k]] = len(names)
                names.append(new[k])
            out[k] = j
        return out

    def _grow_items(self, n: int) -> None:
        # Capacity doubles, so adding items costs amortised O(1) each.
        if n > len(self.evidence_):
            cap = max(n, 2 * len(self.evidence_))
            self.evidence_ = _resized(self.evidence_, cap, 0.0)
            self.p_correct_ = _resized(self.p_correct_, cap, self.class_prior_)

    def _grow_annotators(self, m: int) -> None:
        if m > len(self.counts_):
            self.counts_ = np.vstack([self.counts_, np.zeros((m - len(self.counts_), 4))])
            self.unsure_ = np.concatenate([self.unsure_, np.zeros(m - len(self.unsure_))])
            self.n_labels_ = np.concatenate(
                [self.n_labels_, np.zeros(m - len(self.n_labels_), dtype=np.int64)]
            )


def _weights(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood ratios of a +1 and of a -1 label, per annotator."""
    return np.log(alpha) - np.log1p(-beta), np.log1p(-alpha) - np.log(beta)


def _resized(a: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(n, fill, dtype=a.dtype)
    out[: len(a)] = a
    return out
