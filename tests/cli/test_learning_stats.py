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


def _result(runs: list[tuple[str, int, str, float]], items: int = 3):
    from crlhf_cli.learning_result import LearningResult, RunResult

    return LearningResult(
        config={"crowds": ["default"], "arms": ["truth", "em2", "random"], "methods": ["pg-line"]},
        items=[f"i{k}" for k in range(items)],
        base_margin=[0.0] * items,
        completions=5,
        lines=9,
        share_breaking=0.4,
        runs=[
            RunResult(crowd, seed, "pg-line", arm, [d] * items, 1.0, 1, None, None)
            for crowd, seed, arm, d in runs
        ],
    )


def test_a_later_run_adds_seeds_and_pairs_only_the_seeds_every_arm_ran(tmp_path):
    import json
    from dataclasses import asdict

    from crlhf_cli.learning_result import LearningResult

    first = _result([("default", 0, "truth", 1.0), ("default", 0, "em2", 0.5)])
    later = _result(
        [("default", 1, "truth", 2.0), ("default", 1, "em2", 1.0), ("default", 1, "random", 0.0)]
    )
    later.config["crowds"] = ["default", "hostile"]
    path = tmp_path / "later.json"
    path.write_text(json.dumps(asdict(later)))
    merged = first.merge(LearningResult.load(path)).merge(first)  # a seed twice counts once
    assert len(merged.runs) == 5 and merged.config["crowds"] == ["default", "hostile"]
    assert merged.table("default", "pg-line", "em2") == [[0.5] * 3, [1.0] * 3]
    em2, rnd = merged.paired("default", "pg-line", "em2", "random")
    assert em2 == [[1.0] * 3] and rnd == [[0.0] * 3]  # seed 0 has no random arm
    truth = merged.paired("hostile", "pg-line", "truth")[0]
    assert truth == [[1.0] * 3, [2.0] * 3]  # the truth arm serves every crowd


def test_runs_on_other_items_are_not_merged():
    import pytest
    from crlhf_cli.services import DemoError

    with pytest.raises(DemoError, match="held-out items"):
        _result([]).merge(_result([], items=4))
