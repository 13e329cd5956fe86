"""The gate: paired intervals over the same items, margins by scale, evidence before trust."""

from __future__ import annotations

import numpy as np
import pytest
from crlhf_trainer.errors import TrainConfigError
from crlhf_trainer.gate import GateConfig, gate, margin_for, paired_interval


def test_the_demo_night_is_refused():
    """Issue 13: held-out reward 0.053 → 0.012 on 4 completions was published (margin 0.2).

    The four per-completion rewards below are the logged night's: their means are the
    summary's 0.053 and 0.012. Four items are too few for the gate to trust, and even
    allowing a single item the paired interval of the drop reaches below −0.02: refused.
    """
    baseline = {"heldout/reward": [0.1667, 0.0455, 0.0, 0.0]}
    candidate = {"heldout/reward": [0.0476, 0.0, 0.0, 0.0]}
    assert np.mean(baseline["heldout/reward"]) == pytest.approx(0.053, abs=1e-3)
    assert np.mean(candidate["heldout/reward"]) == pytest.approx(0.012, abs=1e-3)
    decision = gate(candidate, baseline)
    assert not decision.passed and decision.decision == "not enough evidence"
    assert "heldout/reward has 4 items" in decision.reason()
    trusting = gate(candidate, baseline, GateConfig(min_items=4, publish_without_evidence=True))
    assert trusting.decision == "refused", "harm is never published"
    assert "heldout/reward" in trusting.reason() and "n=4" in trusting.reason()
    assert trusting.checks[0].high < 0.02 and trusting.checks[0].low < -0.02


def test_too_few_items_leave_a_candidate_with_the_reason_unless_asked():
    same = {"mbpp/pass@1": [1.0, 0.0, 1.0]}
    decision = gate(same, same)
    assert decision.decision == "not enough evidence" and not decision.passed
    assert "mbpp/pass@1 has 3 items" in decision.reason()
    forced = gate(same, same, GateConfig(publish_without_evidence=True))
    assert forced.passed and "without enough evidence" in forced.reason()


def test_no_gated_metric_never_publishes_silently():
    decision = gate({"mbpp/problems": [5]}, {"mbpp/problems": [5]})
    assert decision.decision == "not enough evidence"
    assert "no gated metric" in decision.reason()


def test_a_clear_improvement_passes_and_a_clear_regression_does_not():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2, size=60).astype(float)
    better = base.copy()
    better[rng.choice(np.flatnonzero(base == 0), size=10, replace=False)] = 1.0
    worse = base.copy()
    worse[rng.choice(np.flatnonzero(base == 1), size=10, replace=False)] = 0.0
    up = gate({"humaneval/pass@1": better}, {"humaneval/pass@1": base})
    assert up.passed and up.checks[0].low > 0
    down = gate({"humaneval/pass@1": worse}, {"humaneval/pass@1": base})
    assert down.decision == "refused" and down.checks[0].high < 0


def test_noise_within_the_margin_passes_with_enough_items():
    base = [1.0, 0.0] * 100
    cand = list(base)
    cand[0], cand[1], cand[3] = 0.0, 1.0, 1.0  # 1 problem lost, 2 won of 200
    decision = gate({"mbpp/pass@1": cand}, {"mbpp/pass@1": base})
    assert decision.passed, decision.reason()
    # the same churn on 40 problems is too uncertain to rule out a 2-point loss: kept back,
    # as thin evidence rather than harm (it gained a problem)
    few = gate({"mbpp/pass@1": cand[:40]}, {"mbpp/pass@1": base[:40]})
    assert few.decision == "not enough evidence" and few.checks[0].low < -0.02
    assert few.checks[0].verdict == "unclear" and not few.passed


def test_the_log_prob_margin_is_judged_against_its_own_spread():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 2.0, size=40)
    assert margin_for("heldout/line_margin", base) == pytest.approx(0.1 * np.std(base))
    small_drop = {"heldout/line_margin": base - 0.01}
    big_drop = {"heldout/line_margin": base - 1.0}
    assert gate(small_drop, {"heldout/line_margin": base}).passed
    assert gate(big_drop, {"heldout/line_margin": base}).decision == "refused"


def test_the_gate_compares_the_same_items_only():
    with pytest.raises(TrainConfigError, match="same items"):
        gate({"mbpp/pass@1": [1.0] * 30}, {"mbpp/pass@1": [1.0] * 29})
    with pytest.raises(TrainConfigError):
        GateConfig(confidence=1.5).validate()


def test_the_paired_interval_covers_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(3)
    small = rng.normal(0.2, 1.0, size=20)
    large = rng.normal(0.2, 1.0, size=2000)
    m, lo, hi = paired_interval(small)
    assert lo < m < hi
    _, lo2, hi2 = paired_interval(large)
    assert hi2 - lo2 < (hi - lo) / 5
    assert lo2 < 0.2 < hi2


def test_the_decision_serialises_without_nan():
    import json

    decision = gate({"heldout/line_margin": []}, {"heldout/line_margin": []})
    text = json.dumps(decision.to_json(), allow_nan=False)
    assert '"decision": "not enough evidence"' in text


def test_a_candidate_that_degenerates_is_refused_on_the_guard():
    """The demo of 2026-12-06 (Gemma 3 270M, conventions): the held-out log-prob metric
    barely moved (Δ −0.002 [−0.032, +0.028]) while greedy completions of 24 held-out prompts
    that parse and repeat no line fell from 16 to 10: the guard refuses, and says so, even
    though pass@1 on 5 problems alone would only have been 'not enough evidence'."""
    rng = np.random.default_rng(0)
    base_conv = list(rng.normal(0.09, 0.1, 60))
    baseline = {
        "heldout/conventions": base_conv,
        "heldout/sound": [1.0] * 16 + [0.0] * 8,
        "mbpp/pass@1": [0.0] * 5,
    }
    candidate = {
        "heldout/conventions": [x + rng.normal(0, 0.01) for x in base_conv],
        "heldout/sound": [1.0] * 10 + [0.0] * 14,
        "mbpp/pass@1": [0.0] * 5,
    }
    decision = gate(candidate, baseline)
    assert decision.decision == "refused"
    reason = decision.reason()
    assert reason.startswith("refused: harm on heldout/sound") and "n=24" in reason
    assert "conventions" not in reason
    (sound,) = [c for c in decision.checks if c.name == "heldout/sound"]
    assert sound.margin == pytest.approx(0.05) and sound.high < 0
    # the same guard unchanged passes its check
    same = gate({**candidate, "heldout/sound": baseline["heldout/sound"]}, baseline)
    assert [c.verdict for c in same.checks if c.name == "heldout/sound"] == ["ok"]


def test_a_guard_too_wide_to_tell_is_not_enough_evidence_not_harm():
    """The demo of 2026-12-06, evening (Gemma 3 270M, conventions): 24 guard prompts went
    from 9 to 11 sound completions, Δ +0.083 [−0.167, +0.333]. The interval cannot rule out
    a loss of 5 points, so the adapter stays a candidate, but it shows no harm: the reason
    says the evidence is too thin, not that the guard was harmed. Half the prompts changing
    sign either way is what 24 items allow."""
    before = [1.0] * 9 + [0.0] * 15
    after = [1.0] * 5 + [0.0] * 4 + [1.0] * 6 + [0.0] * 9  # 4 lost, 6 gained: 11 of 24
    decision = gate({"heldout/sound": after}, {"heldout/sound": before})
    (sound,) = decision.checks
    assert sound.delta == pytest.approx(2 / 24) and sound.low < -sound.margin < 0 < sound.high
    assert sound.verdict == "unclear" and decision.decision == "not enough evidence"
    reason = decision.reason()
    assert reason.startswith("not enough evidence (heldout/sound") and "harm" not in reason
    assert "cannot rule out a loss of 0.05" in reason
    # a team may publish it on purpose, as it may with too few items; harm it may not
    assert gate(
        {"heldout/sound": after},
        {"heldout/sound": before},
        GateConfig(publish_without_evidence=True),
    ).passed
    worse = [1.0] * 3 + [0.0] * 21  # 9 → 3: the whole interval is a loss
    forced = gate(
        {"heldout/sound": worse},
        {"heldout/sound": before},
        GateConfig(publish_without_evidence=True),
    )
    assert forced.decision == "refused" and forced.checks[0].verdict == "harm"
