"""The learning benchmark's statistics: paired intervals over seeds and items, recovery."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from crlhf_cli import learning_stats as ls


def test_docstring_examples_run():
    failed, attempted = doctest.testmod(ls)
    assert attempted > 0 and failed == 0


def test_recovery_of_an_arm_halfway_between_random_and_truth():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, size=(3, 40))
    truth, random = 1.0 + noise, 0.0 + noise
    arm = 0.5 + noise
    r = ls.recovery(arm, random, truth)
    assert r.mean == pytest.approx(0.5, abs=1e-9)
    assert r.low < 0.5 < r.high and r.high - r.low < 0.2


def test_intervals_widen_when_seeds_disagree():
    rng = np.random.default_rng(1)
    items = rng.normal(0.1, 0.2, size=40)
    agree = np.stack([items, items, items])
    disagree = np.stack([items - 0.3, items, items + 0.3])
    a, d = ls.mean_interval(agree), ls.mean_interval(disagree)
    assert a.mean == pytest.approx(d.mean)
    assert (d.high - d.low) > 1.5 * (a.high - a.low)


def test_paired_difference_sees_a_small_consistent_gain_that_noise_hides():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1.0, size=(3, 50))
    better = base + 0.05
    diff = ls.paired_difference(better, base)
    assert diff.excludes_zero() and diff.low > 0
    unpaired = ls.mean_interval(better)
    assert unpaired.low < 0 < unpaired.high  # the spread of items alone would hide it


def test_line_scores_put_accuracy_beside_its_baselines():
    truth = [1] * 95 + [-1] * 5
    always_right = ls.line_scores([0.9] * 100, truth)
    assert always_right.accuracy == always_right.constant == 0.95
    assert always_right.balanced == 0.5
    assert always_right.auc == 0.5
    good = ls.line_scores([0.9] * 95 + [0.1] * 5, truth)
    assert good.balanced == 1.0 and good.auc == 1.0 and good.brier == pytest.approx(0.01)


def test_arms_must_share_seeds_and_items():
    with pytest.raises(ValueError, match="paired"):
        ls.recovery([[1.0, 2.0]], [[1.0]], [[1.0, 2.0]])
