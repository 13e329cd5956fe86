"""Rewards: the share of correct lines, its Poisson–binomial interval, per-line credit."""

from __future__ import annotations

import doctest
import itertools

import crlhf_trainer.rewards as rewards_module
import numpy as np
import pytest
from crlhf_trainer.aggregation import AggregationResult, aggregate
from crlhf_trainer.rewards import completion_rewards, poisson_binomial_pmf, split_item
from crlhf_trainer.simulate import simulate_crowd


def test_docstring_examples_run():
    failed, attempted = doctest.testmod(rewards_module)
    assert attempted > 0 and failed == 0


def test_poisson_binomial_matches_enumeration():
    q = np.array([0.9, 0.2, 0.6, 0.5])
    expect = np.zeros(5)
    for outcome in itertools.product([0, 1], repeat=4):
        prob = np.prod([qi if o else 1 - qi for qi, o in zip(q, outcome, strict=True)])
        expect[sum(outcome)] += prob
    np.testing.assert_allclose(poisson_binomial_pmf(q[None, :])[0], expect, atol=1e-15)


def test_reward_is_the_mean_posterior_and_unrated_lines_use_the_prior():
    res = AggregationResult(
        "em2", ["a:0", "a:2", "b:0", "solo"], np.array([1.0, 0.0, 0.25, 0.8]), [], 0.6
    )
    out = completion_rewards(res, {"a": 4, "never-rated": 2})
    assert out["a"].line_posteriors == [1.0, 0.6, 0.0, 0.6]
    assert out["a"].mean == pytest.approx(2.2 / 4)
    assert out["b"].line_posteriors == [0.25] and out["b"].mean == 0.25
    assert out["solo"].mean == pytest.approx(0.8)
    assert out["never-rated"].line_posteriors == [0.6, 0.6]
    # certain lines: 1 of a's lines is surely correct, 1 surely wrong, 2 at 0.6
    assert out["a"].low == 0.25 and out["a"].high == 0.75


def test_certain_lines_give_a_point_interval():
    res = AggregationResult("mv", ["c:0", "c:1", "c:2"], np.array([1.0, 1.0, 0.0]), [], 0.5)
    r = completion_rewards(res)["c"]
    assert r.low == r.high == pytest.approx(2 / 3)


def test_split_item_handles_colons_in_ids():
    assert split_item("urn:x:7") == ("urn:x", 7)
    assert split_item("a:b") == ("a:b", 0)


def test_reward_intervals_cover_the_true_share_near_90_percent():
    hits = []
    for seed in range(3):
        crowd = simulate_crowd(
            3000,
            40,
            {"reliable": 0.5, "mediocre": 0.5},
            seed=seed,
            lines_per_completion=6,
            labels_per_item=(2, 3),
        )
        result = aggregate(crowd.labels, "em2")
        out = completion_rewards(result)
        truth = (crowd.truth > 0).reshape(-1, 6).mean(axis=1)
        for c, share in enumerate(truth):
            r = out[f"c{c}"]
            assert r.low <= r.mean <= r.high
            hits.append(r.low - 1e-9 <= share <= r.high + 1e-9)
    assert 0.85 <= np.mean(hits) <= 1.0


def test_store_export_to_rewards_end_to_end():
    from crlhf_trainer.aggregation.labels import LabelSet

    rows = []
    for k, (cid, line, annotator, label) in enumerate(
        [
            ("c1", 0, "ann", 1),
            ("c1", 0, "bob", 1),
            ("c1", 1, "ann", -1),
            ("c1", 1, "bob", -1),
            ("hp", 0, "ann", 1),
            ("hp", 0, "bob", -1),
            ("hp", 1, "ann", -1),
            ("hp", 1, "bob", 1),
        ]
    ):
        rows.append(
            {
                "rating_id": k,
                "completion_id": cid,
                "line": line,
                "annotator": annotator,
                "label": label,
                "created_at": "2026-01-01T00:00:00Z",
            }
        )
    labels = LabelSet.from_export([{"labels": rows, "honeypots": {"hp": [1, -1]}, "next": None}])
    result = aggregate(labels, "em2")
    assert result.reliability("ann").reliability > result.reliability("bob").reliability
    out = completion_rewards(result, {"c1": 3, "hp": 2})
    assert out["hp"].mean == 0.5 and out["hp"].low == out["hp"].high == 0.5
    c1 = out["c1"]
    assert len(c1.line_posteriors) == 3 and c1.line_posteriors[2] == result.class_prior
    assert c1.line_posteriors[0] > 0.5 > c1.line_posteriors[1]
