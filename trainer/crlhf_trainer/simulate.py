"""A crowd simulator: annotators of known quality rating lines of known truth.

Each line is correct with probability ``class_prior``.  Each annotator is one of these
kinds, with a sensitivity α = P(👍 | correct) and a specificity β = P(👎 | wrong):

=============  ================================================================
``reliable``   π ~ U(0.85, 0.97); α, β = π ± U(-0.04, 0.04)
``mediocre``   π ~ U(0.65, 0.80); α, β = π ± U(-0.04, 0.04)
``spammer``    random clicks: 👍 with probability r ~ U(0.3, 0.7), so α = r, β = 1 - r
``always_up``  👍 on everything: α = 1, β = 0
``adversary``  π ~ U(0.10, 0.30): mostly the opposite of the truth
=============  ================================================================

Every line gets between ``labels_per_item[0]`` and ``labels_per_item[1]`` labels from
distinct annotators drawn uniformly; a share ``honeypot_rate`` of the lines are honeypots
whose truth goes into ``labels.gold``.  An annotator's true reliability is the accuracy on
a random line, π = p·α + (1-p)·β with p the share of correct lines.

>>> crowd = simulate_crowd(100, 10, {"reliable": 0.8, "always_up": 0.2}, seed=3)
>>> crowd.labels.n_items, crowd.labels.n_annotators, crowd.annotator_kind.count("always_up")
(100, 10, 2)
>>> 3 * 100 <= crowd.labels.n_labels <= 5 * 100
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .aggregation.labels import LabelSet

__all__ = ["KINDS", "SimulatedCrowd", "simulate_crowd"]

KINDS = ("reliable", "mediocre", "spammer", "always_up", "adversary")


@dataclass
class SimulatedCrowd:
    labels: LabelSet
    truth: np.ndarray  # int8 ±1 per item
    annotator_kind: list[str]
    sensitivity: np.ndarray  # α per annotator
    specificity: np.ndarray  # β per annotator
    true_reliability: np.ndarray  # p·α + (1-p)·β per annotator


def _kinds(n_annotators: int, mix: dict[str, float]) -> list[str]:
    """Split annotators among kinds by ``mix`` shares (largest remainder, stable order)."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown annotator kind(s) {sorted(unknown)}; use {KINDS}")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("mix shares must add up to more than 0")
    exact = {k: n_annotators * v / total for k, v in mix.items()}
    counts = {k: int(x) for k, x in exact.items()}
    rest = sorted(exact, key=lambda k: counts[k] - exact[k])
    for k in rest[: n_annotators - sum(counts.values())]:
        counts[k] += 1
    return [k for k in mix for _ in range(counts[k])]


def _coins(kinds: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    sens = np.empty(len(kinds))
    spec = np.empty(len(kinds))
    ranges = {"reliable": (0.85, 0.97), "mediocre": (0.65, 0.80), "adversary": (0.10, 0.30)}
    for j, kind in enumerate(kinds):
        if kind in ranges:
            pi = rng.uniform(*ranges[kind])
            d = rng.uniform(-0.04, 0.04)
            sens[j], spec[j] = pi + d, pi - d
        elif kind == "spammer":
            r = rng.uniform(0.3, 0.7)
            sens[j], spec[j] = r, 1 - r
        else:  # always_up
            sens[j], spec[j] = 1.0, 0.0
    return np.clip(sens, 0, 1), np.clip(spec, 0, 1)


def _assign(n_items, n_annotators, lo, hi, rng, chunk=16384):
    """Per item, a random number in [lo, hi] of distinct annotators."""
    if hi > n_annotators:
        raise ValueError(f"labels_per_item up to {hi} needs at least {hi} annotators")
    k = rng.integers(lo, hi + 1, size=n_items)
    items, anns = [], []
    for start in range(0, n_items, chunk):
        stop = min(start + chunk, n_items)
        # The first k columns of a random permutation per row: k distinct annotators.
        order = np.argsort(rng.random((stop - start, n_annotators), dtype=np.float32), axis=1)
        take = np.arange(n_annotators)[None, :] < k[start:stop, None]
        rows, cols = np.nonzero(take)
        items.append(rows + start)
        anns.append(order[rows, cols])
    return np.concatenate(items).astype(np.int32), np.concatenate(anns).astype(np.int32)


def simulate_crowd(
    n_items: int,
    n_annotators: int,
    mix: dict[str, float],
    labels_per_item: tuple[int, int] = (3, 5),
    honeypot_rate: float = 0.05,
    seed: int = 0,
    *,
    class_prior: float = 0.7,
    lines_per_completion: int | None = None,
) -> SimulatedCrowd:
    """Simulate a crowd (see the module docstring).

    ``lines_per_completion``: name items ``"c<n>:<line>"`` so that consecutive items form
    completions of that many lines (for rewards); otherwise items are ``"i<n>"``.
    """
    rng = np.random.default_rng(seed)
    kinds = _kinds(n_annotators, mix)
    sens, spec = _coins(kinds, rng)
    truth = np.where(rng.random(n_items) < class_prior, 1, -1).astype(np.int8)
    item_idx, ann_idx = _assign(n_items, n_annotators, *labels_per_item, rng)
    correct = truth[item_idx] > 0
    p_up = np.where(correct, sens[ann_idx], 1 - spec[ann_idx])
    label = np.where(rng.random(len(item_idx)) < p_up, 1, -1).astype(np.int8)
    n_gold = int(round(honeypot_rate * n_items))
    gold_items = rng.choice(n_items, size=n_gold, replace=False)
    gold = {int(i): int(truth[i]) for i in gold_items}
    if lines_per_completion:
        names = [f"c{i // lines_per_completion}:{i % lines_per_completion}" for i in range(n_items)]
    else:
        names = [f"i{i}" for i in range(n_items)]
    labels = LabelSet.from_arrays(
        names, [f"a{j}" for j in range(n_annotators)], item_idx, ann_idx, label, gold
    )
    p = float((truth > 0).mean()) if n_items else class_prior
    return SimulatedCrowd(labels, truth, kinds, sens, spec, p * sens + (1 - p) * spec)
