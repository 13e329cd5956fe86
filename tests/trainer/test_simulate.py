"""The crowd simulator: kinds, coins, assignments, honeypots, reproducibility."""

from __future__ import annotations

import doctest

import crlhf_trainer.simulate as simulate_module
import numpy as np
import pytest
from crlhf_trainer.simulate import simulate_crowd


def test_docstring_examples_run():
    failed, attempted = doctest.testmod(simulate_module)
    assert attempted > 0 and failed == 0


def test_mix_shares_and_coins_per_kind():
    mix = {"reliable": 0.4, "mediocre": 0.2, "spammer": 0.1, "always_up": 0.1, "adversary": 0.2}
    crowd = simulate_crowd(5000, 50, mix, seed=1)
    kinds = np.array(crowd.annotator_kind)
    assert {k: int((kinds == k).sum()) for k in mix} == {
        "reliable": 20,
        "mediocre": 10,
        "spammer": 5,
        "always_up": 5,
        "adversary": 10,
    }
    up = kinds == "always_up"
    assert np.all(crowd.sensitivity[up] == 1) and np.all(crowd.specificity[up] == 0)
    ls = crowd.labels
    up_labels = ls.label[np.isin(ls.annotator_idx, np.flatnonzero(up))]
    assert np.all(up_labels == 1)
    # observed agreement with the truth matches the true reliability
    right = ls.label == crowd.truth[ls.item_idx]
    observed = np.bincount(ls.annotator_idx, weights=right) / np.bincount(ls.annotator_idx)
    assert np.abs(observed - crowd.true_reliability).max() < 0.1
    assert crowd.true_reliability[kinds == "adversary"].max() < 0.35
    assert crowd.true_reliability[kinds == "reliable"].min() > 0.8


def test_labels_per_item_distinct_annotators_and_honeypots():
    crowd = simulate_crowd(
        2000, 12, {"reliable": 1.0}, labels_per_item=(2, 4), honeypot_rate=0.1, seed=2
    )
    ls = crowd.labels
    per_item = np.bincount(ls.item_idx, minlength=ls.n_items)
    assert per_item.min() == 2 and per_item.max() == 4
    pairs = ls.item_idx.astype(np.int64) * 100 + ls.annotator_idx
    assert len(np.unique(pairs)) == ls.n_labels
    assert len(ls.gold) == 200
    assert all(crowd.truth[i] == t for i, t in ls.gold.items())


def test_same_seed_same_crowd_and_completion_names():
    a = simulate_crowd(300, 10, {"reliable": 1.0}, seed=7, lines_per_completion=5)
    b = simulate_crowd(300, 10, {"reliable": 1.0}, seed=7, lines_per_completion=5)
    np.testing.assert_array_equal(a.labels.label, b.labels.label)
    assert a.labels.items[:6] == ["c0:0", "c0:1", "c0:2", "c0:3", "c0:4", "c1:0"]
    c = simulate_crowd(300, 10, {"reliable": 1.0}, seed=8)
    assert not np.array_equal(a.truth, c.truth)


def test_bad_mix_and_too_few_annotators_are_errors():
    with pytest.raises(ValueError, match="unknown annotator kind"):
        simulate_crowd(10, 10, {"expert": 1.0})
    with pytest.raises(ValueError, match="needs at least 5 annotators"):
        simulate_crowd(10, 4, {"reliable": 1.0})
