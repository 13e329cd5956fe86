"""Estimators: exact posteriors, recovery on simulated crowds, flags, online updates."""

from __future__ import annotations

import doctest
import math

import crlhf_trainer.aggregation as aggregation
import numpy as np
import pytest
from crlhf_trainer.aggregation import (
    ESTIMATORS,
    MajorityVote,
    PaperEstimator,
    PaperL1Estimator,
    TwoCoinEM,
    aggregate,
    base,
    em2,
    mv,
    paper,
)
from crlhf_trainer.aggregation.labels import LabelSet
from crlhf_trainer.simulate import simulate_crowd

HONEST = {"reliable": 0.6, "mediocre": 0.4}
ADVERSARIAL = {"reliable": 0.4, "mediocre": 0.3, "adversary": 0.3}
THUMBS_UP = {"reliable": 0.4, "mediocre": 0.2, "always_up": 0.4}
MIXED = {"reliable": 0.35, "mediocre": 0.25, "spammer": 0.1, "always_up": 0.15, "adversary": 0.15}


def accuracy(result, crowd) -> float:
    free = np.ones(len(crowd.truth), dtype=bool)
    free[list(crowd.labels.gold)] = False
    return float(((result.p_correct > 0.5) == (crowd.truth > 0))[free].mean())


def reliabilities(result) -> np.ndarray:
    return np.array([r.reliability for r in result.annotators])


@pytest.mark.parametrize("module", [aggregation, base, em2, mv, paper])
def test_docstring_examples_run(module):
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0


def test_public_names_are_pinned():
    assert sorted(aggregation.__all__) == sorted(
        [
            "ESTIMATORS",
            "AggregationResult",
            "AnnotatorReliability",
            "MajorityVote",
            "PaperEstimator",
            "PaperL1Estimator",
            "TwoCoinEM",
            "aggregate",
        ]
    )
    assert {
        "em2": TwoCoinEM,
        "paper": PaperEstimator,
        "paper-l1": PaperL1Estimator,
        "mv": MajorityVote,
    } == ESTIMATORS
    with pytest.raises(ValueError, match="unknown method 'ds'"):
        aggregate(LabelSet.from_records([("x", "a", 1)]), "ds")


# ---------------------------------------------------------------- analytic cases
def test_paper_posterior_is_the_formula_for_known_reliabilities():
    # Honeypots fix π exactly: annotator a agrees on 3 of 4, b on 1 of 4 (an adversary),
    # c on 2 of 2.  With a Beta(2, 1) prior π = (2 + agreed) / (3 + rated).
    records, gold = [], {}
    for h, truth in enumerate([1, 1, -1, -1]):
        gold[f"h{h}"] = truth
        records.append((f"h{h}", "a", truth if h < 3 else -truth))
        records.append((f"h{h}", "b", -truth if h < 3 else truth))
    for h in (0, 1):
        records.append((f"h{h}", "c", gold[f"h{h}"]))
    records += [("x", "a", 1), ("x", "b", 1), ("x", "c", -1), ("y", "a", -1)]
    ls = LabelSet.from_records(records, gold)
    result = PaperEstimator(step=0.0).fit(ls)
    pi = {"a": 5 / 7, "b": 3 / 7, "c": 4 / 5}

    def lg(p):
        return math.log(p / (1 - p))

    # the prior is the fixed point on the two rated lines x and y (never the honeypots)
    e = {"x": lg(pi["a"]) + lg(pi["b"]) - lg(pi["c"]), "y": -lg(pi["a"])}
    prior = 0.5
    for _ in range(200):
        prior = (1 + sum(1 / (1 + math.exp(-(lg(prior) + v))) for v in e.values())) / (2 + 2)
    assert result.class_prior == pytest.approx(prior, rel=1e-6)

    expect_x = 1 / (1 + math.exp(-(lg(prior) + lg(pi["a"]) + lg(pi["b"]) - lg(pi["c"]))))
    expect_y = 1 / (1 + math.exp(-(lg(prior) - lg(pi["a"]))))
    assert result.posterior("x") == pytest.approx(expect_x, rel=1e-6)
    assert result.posterior("y") == pytest.approx(expect_y, rel=1e-6)
    assert [r.reliability for r in result.annotators] == pytest.approx(list(pi.values()))
    assert result.posterior("h3") == 0.0 and result.posterior("h0") == 1.0
    b = result.reliability("b")  # 2π - 1 = -1/7: closer to random than to adversarial
    assert b.spammer_score == pytest.approx(1 / 7) and b.flag == "spammer"


def test_em2_posteriors_match_bayes_rule_by_enumeration():
    crowd = simulate_crowd(300, 8, MIXED, seed=5)
    est = TwoCoinEM()
    result = est.fit(crowd.labels)
    alpha, beta, p = est.alpha_, est.beta_, result.class_prior
    ls = crowd.labels
    like = {i: [p, 1 - p] for i in range(ls.n_items)}  # P(labels, z=+1), P(labels, z=-1)
    for i, a, y in zip(
        ls.item_idx.tolist(), ls.annotator_idx.tolist(), ls.label.tolist(), strict=True
    ):
        like[i][0] *= alpha[a] if y > 0 else 1 - alpha[a]
        like[i][1] *= 1 - beta[a] if y > 0 else beta[a]
    expect = np.array([like[i][0] / sum(like[i]) for i in range(ls.n_items)])
    for i, truth in ls.gold.items():
        expect[i] = 1.0 if truth > 0 else 0.0
    np.testing.assert_allclose(result.p_correct, expect, rtol=1e-9, atol=1e-12)


def test_em2_reduces_to_the_one_coin_formula_when_sensitivity_equals_specificity():
    pi = np.array([0.9, 0.6, 0.2])
    w_pos, w_neg = em2._weights(pi, pi)
    np.testing.assert_allclose(w_pos, base.logit(pi))
    np.testing.assert_allclose(w_neg, -base.logit(pi))


# ---------------------------------------------------------------- recovery
@pytest.mark.parametrize("mix", [HONEST, ADVERSARIAL, THUMBS_UP, MIXED])
def test_em2_recovers_reliabilities_and_beats_majority_vote(mix):
    crowd = simulate_crowd(2000, 50, mix, seed=11)
    result = aggregate(crowd.labels, "em2")
    err = np.abs(reliabilities(result) - crowd.true_reliability)
    assert err.mean() < 0.04 and err.max() < 0.2
    sens = np.array([r.sensitivity for r in result.annotators])
    assert np.abs(sens - crowd.sensitivity).mean() < 0.06
    assert accuracy(result, crowd) >= accuracy(aggregate(crowd.labels, "mv"), crowd)
    assert abs(result.class_prior - (crowd.truth > 0).mean()) < 0.03


def test_em2_is_deterministic():
    crowd = simulate_crowd(1000, 20, MIXED, seed=2)
    a, b = aggregate(crowd.labels), aggregate(crowd.labels)
    np.testing.assert_array_equal(a.p_correct, b.p_correct)


@pytest.mark.parametrize("mix", [ADVERSARIAL, THUMBS_UP, MIXED])
def test_adversaries_and_always_up_spammers_are_flagged_and_cannot_flip_labels(mix):
    crowd = simulate_crowd(2000, 50, mix, seed=3)
    result = aggregate(crowd.labels, "em2")
    want = {
        "reliable": "ok",
        "mediocre": "ok",
        "spammer": "spammer",
        "always_up": "spammer",
        "adversary": "adversary",
    }
    flags = [r.flag for r in result.annotators]
    hits = [f == want[k] for f, k in zip(flags, crowd.annotator_kind, strict=True)]
    assert np.mean(hits) >= 0.9
    assert all(
        f == want[k]
        for f, k in zip(flags, crowd.annotator_kind, strict=True)
        if k in ("always_up", "adversary")
    )
    assert accuracy(result, crowd) > 0.9


def test_honeypots_keep_em2_on_the_right_side_when_most_annotators_lie():
    # 60% adversaries: majority vote is mostly wrong, EM started from it would settle in
    # the mirror solution; started from the honeypots it does not.
    crowd = simulate_crowd(
        2000, 30, {"reliable": 0.4, "adversary": 0.6}, seed=4, honeypot_rate=0.05
    )
    assert accuracy(aggregate(crowd.labels, "mv"), crowd) < 0.5
    assert accuracy(aggregate(crowd.labels, "em2"), crowd) > 0.9


def test_paper_methods_run_and_report_filtered_annotators():
    crowd = simulate_crowd(2000, 30, {"reliable": 0.7, "spammer": 0.3}, seed=6, honeypot_rate=0.2)
    for method in ("paper", "paper-l1"):
        result = aggregate(crowd.labels, method)
        assert accuracy(result, crowd) > 0.85, method
        assert len(result.annotators) == 30
    est = PaperL1Estimator()
    result = est.fit(crowd.labels)
    filtered = set(est.filtered_)
    assert filtered == {r.annotator for r in result.annotators if r.reliability == 0.5}
    spammers = {f"a{j}" for j, k in enumerate(crowd.annotator_kind) if k == "spammer"}
    assert filtered and len(filtered & spammers) >= 0.75 * len(filtered)


def test_paper_update_keeps_reliabilities_away_from_0_and_1():
    crowd = simulate_crowd(4000, 20, HONEST, seed=8, honeypot_rate=0.01)
    pi = reliabilities(aggregate(crowd.labels, "paper"))
    assert pi.min() > 0.05 and pi.max() < 0.995


# ---------------------------------------------------------------- intervals
def test_em2_reliability_intervals_cover_near_90_percent():
    hits = []
    for seed, mix in enumerate([HONEST, ADVERSARIAL, THUMBS_UP, MIXED] * 2):
        crowd = simulate_crowd(2000, 50, mix, seed=100 + seed)
        result = aggregate(crowd.labels, "em2")
        for r, t in zip(result.annotators, crowd.true_reliability, strict=True):
            assert r.low <= r.reliability <= r.high
            hits.append(r.low <= t <= r.high)
    assert 0.8 <= np.mean(hits) <= 0.99


# ---------------------------------------------------------------- online
def test_online_update_is_close_to_a_full_refit():
    crowd = simulate_crowd(3000, 40, MIXED, seed=9)
    ls = crowd.labels
    order = np.random.default_rng(0).permutation(ls.n_labels)
    first, rest = order[: int(0.8 * len(order))], order[int(0.8 * len(order)) :]
    online = TwoCoinEM()
    online.fit(ls.take(np.sort(first)))
    for batch in np.array_split(rest, 5):
        online.partial_fit(ls.take(np.sort(batch)))
    got = online.result()
    full = TwoCoinEM().fit(ls)
    by_name = dict(zip(got.items, got.p_correct, strict=True))
    p_online = np.array([by_name[i] for i in full.items])
    assert np.mean((p_online > 0.5) == (full.p_correct > 0.5)) > 0.98
    assert np.abs(p_online - full.p_correct).mean() < 0.03
    rel_online = {r.annotator: r.reliability for r in got.annotators}
    diff = [abs(rel_online[r.annotator] - r.reliability) for r in full.annotators]
    assert max(diff) < 0.05
    assert online.needs_refit  # absorbed 25% of the fitted labels: over the 20% rule
    refit = online.refit()
    np.testing.assert_allclose(
        refit.p_correct,
        [dict(zip(full.items, full.p_correct, strict=True))[i] for i in refit.items],
    )


def test_online_update_adds_new_items_annotators_and_honeypots():
    est = TwoCoinEM()
    est.fit(simulate_crowd(500, 10, HONEST, seed=1).labels)
    batch = LabelSet.from_records(
        [("new-line", "a0", 1), ("new-line", "newcomer", 1), ("i0", "newcomer", -1)],
        gold={"i0": -1},
    )
    est.partial_fit(batch)
    result = est.result()
    assert result.items[-1] == "new-line" and result.annotators[-1].annotator == "newcomer"
    assert result.posterior("new-line") > 0.5
    assert result.posterior("i0") == 0.0
    assert result.reliability("newcomer").n_labels == 2


def test_needs_refit_after_many_absorbed_labels_not_after_a_few():
    ls = simulate_crowd(1000, 20, HONEST, seed=2).labels
    n = ls.n_labels
    few = TwoCoinEM(refit_fraction=0.2)
    few.fit(ls.take(np.arange(n - n // 20)))
    few.partial_fit(ls.take(np.arange(n - n // 20, n)))
    assert not few.needs_refit
    many = TwoCoinEM(refit_fraction=0.2)
    many.fit(ls.take(np.arange(n // 2)))
    many.partial_fit(ls.take(np.arange(n // 2, n)))
    assert many.needs_refit


def test_em2_without_honeypots_still_beats_majority_vote_on_an_honest_crowd():
    crowd = simulate_crowd(
        2000, 30, {"reliable": 0.3, "mediocre": 0.5, "spammer": 0.2}, seed=12, honeypot_rate=0.0
    )
    assert not crowd.labels.gold
    em = aggregate(crowd.labels, "em2")
    assert accuracy(em, crowd) > accuracy(aggregate(crowd.labels, "mv"), crowd)


def test_online_honeypot_truth_for_a_line_already_seen_clamps_it():
    est = TwoCoinEM()
    est.fit(LabelSet.from_records([("x", "a", 1), ("x", "b", 1), ("y", "a", -1)]))
    before = est.result().class_prior
    est.partial_fit(LabelSet.from_records([("y", "b", -1), ("x", "c", 1)], gold={"x": -1}))
    # the crowd said 👍 on "x", but its truth arrived with the batch: it is clamped
    result = est.result()
    assert result.posterior("x") == 0.0 and result.items == ["x", "y"]
    assert result.class_prior < before


def _skewed_crowd(seed: int = 4):
    """Real lines 10 % correct, honeypots 90 % correct, one crowd rating both."""
    mix = {"reliable": 0.5, "mediocre": 0.3, "spammer": 0.2}
    real = simulate_crowd(600, 12, mix, honeypot_rate=0.0, seed=seed, class_prior=0.1)
    pots = simulate_crowd(120, 12, mix, honeypot_rate=1.0, seed=seed, class_prior=0.9)
    assert np.allclose(real.sensitivity, pots.sensitivity)  # the same annotators
    records = [
        (f"{tag}{real_or_pot.labels.items[i]}", real_or_pot.labels.annotators[a], int(y))
        for tag, real_or_pot in (("r", real), ("h", pots))
        for i, a, y in zip(
            real_or_pot.labels.item_idx,
            real_or_pot.labels.annotator_idx,
            real_or_pot.labels.label,
            strict=True,
        )
    ]
    gold = {f"h{pots.labels.items[i]}": int(t) for i, t in pots.labels.gold.items()}
    labels = LabelSet.from_records(records, gold)
    truth = {f"r{real.labels.items[i]}": int(t) for i, t in enumerate(real.truth)}
    return labels, truth


@pytest.mark.parametrize("method", ["paper", "paper-l1", "em2"])
def test_the_class_prior_is_learnt_on_the_rated_lines_not_the_honeypots(method):
    """Issue 13: paper/paper-l1 took the honeypots' 0.9 prevalence as the lines' prior."""
    labels, truth = _skewed_crowd()
    result = aggregate(labels, method)
    assert result.class_prior < 0.3, result.class_prior
    index = {item: i for i, item in enumerate(labels.items)}
    right = [(result.p_correct[index[k]] > 0.5) == (t > 0) for k, t in truth.items()]
    assert np.mean(right) > 0.85
