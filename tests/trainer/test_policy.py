"""The policy loss: batch layout, log-probs, the KL estimator, the clipped ratio."""

from __future__ import annotations

import copy

import pytest
import torch
from crlhf_trainer.errors import TrainConfigError
from crlhf_trainer.lora import load_policy
from crlhf_trainer.policy import (
    advantage_fn,
    advantages_pg,
    advantages_pg_line,
    clipped_surrogate,
    collate,
    exact_kl,
    kl_k3,
    policy_loss,
    reference_logprobs,
    token_distributions,
    token_logprobs,
)
from crlhf_trainer.train import TrainConfig
from train_helpers import PROMPTS, examples, sample, tiny


@pytest.fixture(scope="module")
def logged():
    model = tiny()
    rows = sample(model, PROMPTS[:3], 1, max_new_tokens=8)
    return model, examples(model, rows, [1.0, 0.0, 0.5], [[0.9, 0.1]] * 3)


def test_the_batch_puts_every_completion_in_the_last_columns(logged):
    ex = copy.deepcopy(logged[1])
    ex[1].prompt_ids = ex[1].prompt_ids[1:]  # unequal prompt lengths
    b = collate(ex, pad_id=0)
    c = max(len(e.completion_ids) for e in ex)
    assert b.completion_ids.shape == (3, c)
    for i, e in enumerate(ex):
        assert b.completion_ids[i, : len(e.completion_ids)].tolist() == e.completion_ids
        row = b.input_ids[i][b.attention_mask[i].bool()].tolist()
        assert row == e.prompt_ids + e.completion_ids
        assert b.position_ids[i][b.attention_mask[i].bool()].tolist() == list(range(len(row)))


def test_log_probs_in_a_padded_batch_equal_the_logged_sampling_log_probs(logged):
    model_dir, ex = logged
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    lp = token_logprobs(model, collate(ex, 0))
    for i, e in enumerate(ex):
        got = lp[i, : len(e.completion_ids)]
        assert torch.allclose(got, torch.tensor(e.logprobs), atol=1e-3)


def test_the_reference_is_the_base_model_with_the_adapter_off(logged):
    model_dir, ex = logged
    policy = load_policy(str(model_dir), TrainConfig())
    with torch.no_grad():
        for p in (p for n, p in policy.named_parameters() if "lora_B" in n):
            p.normal_(0, 0.5)  # a non-zero adapter
    b = collate(ex, 0)
    adapted = token_logprobs(policy, b).detach()
    ref = reference_logprobs(policy, b)
    assert not torch.allclose(adapted, ref)
    assert torch.equal(token_logprobs(policy, b).detach(), adapted)  # the adapter is back on
    for i, e in enumerate(ex):
        assert torch.allclose(ref[i, : len(e.logprobs)], torch.tensor(e.logprobs), atol=1e-3)


def test_the_kl_term_is_finite_and_not_negative(logged):
    model_dir, ex = logged
    g = torch.Generator().manual_seed(0)
    logp, ref = -torch.rand(1000, generator=g) * 30, -torch.rand(1000, generator=g) * 30
    k3 = kl_k3(logp, ref)
    assert torch.isfinite(k3).all() and (k3 >= 0).all()
    assert torch.equal(kl_k3(logp, logp), torch.zeros_like(logp))
    full = torch.log_softmax(torch.randn(2, 3, 50, generator=g), -1)
    ref_full = torch.log_softmax(torch.randn(2, 3, 50, generator=g), -1)
    kl = exact_kl(full, ref_full)
    assert (kl >= 0).all() and torch.allclose(exact_kl(full, full), torch.zeros(2, 3), atol=1e-6)
    policy = load_policy(str(model_dir), TrainConfig())
    with torch.no_grad():
        for p in (p for n, p in policy.named_parameters() if "lora_B" in n):
            p.normal_(0, 0.5)
    loss, stats = policy_loss(policy, collate(ex, 0), advantages_pg, 0.5, kl_coef=0.1)
    assert torch.isfinite(loss)
    assert stats["kl"] > 0 and torch.isfinite(torch.tensor(stats["kl"]))


def test_the_kl_is_exact_where_the_sampled_estimate_explodes(logged):
    """Pushing a logged token far down makes k3 on that token explode; the exact KL of the
    distribution the policy now has at that position stays what it is."""
    model_dir, ex = logged
    policy = load_policy(str(model_dir), TrainConfig())
    b = collate(ex[:1], 0)
    with torch.no_grad():
        full = token_distributions(policy, b)
    crushed = full.clone()
    t, tok = 0, int(b.completion_ids[0, 0])
    crushed[0, t, tok] = -40.0  # the logged token made nearly impossible
    crushed[0, t] = torch.log_softmax(crushed[0, t], -1)
    k3 = kl_k3(crushed[0, t, tok], full[0, t, tok])
    exact = exact_kl(crushed, full)[0, t]
    assert k3 > 1e6 and exact < 20


def test_the_clip_stops_the_gradient_once_the_ratio_left_the_trust_region():
    old = torch.zeros(4)
    logp = torch.tensor([0.0, 0.5, -0.5, 0.1], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    clipped_surrogate(logp, old, adv, 0.2).sum().backward()
    # ratio e^0.5 > 1.2 with A > 0, e^-0.5 < 0.8 with A < 0: clipped, no gradient
    assert logp.grad[1] == 0 and logp.grad[2] == 0
    assert logp.grad[0] < 0 and logp.grad[3] > 0


def test_the_two_advantages(logged):
    _, ex = logged
    b = collate(ex, 0)
    pg = advantages_pg(b, 0.5)
    assert torch.allclose(pg[0][b.mask[0].bool()], torch.tensor(0.5))
    assert torch.allclose(pg[1][b.mask[1].bool()], torch.tensor(-0.5))
    line = advantages_pg_line(b, 0.5)
    assert torch.allclose(line[b.mask.bool()], b.credit[b.mask.bool()] - 0.5)
    with pytest.raises(TrainConfigError, match="unknown method"):
        advantage_fn("ppo")


def test_logged_log_probs_are_ignored_unless_asked_for(logged):
    """Greedy or quantised serving logs numbers that are no sampling distribution: the
    default ratio is against the current policy; ``use_logged=True`` is PPO's."""
    model_dir, ex = logged
    policy = load_policy(str(model_dir), TrainConfig())
    assert TrainConfig().importance == "policy"
    b = collate(ex, 0)
    b.old_logprobs = b.old_logprobs - 1.0  # as if a quantised model had logged them
    _, stats = policy_loss(policy, b, advantages_pg, 0.5, kl_coef=0.0, use_logged=True)
    assert stats["clip_frac"] == 1.0  # every ratio e^1 is outside the trust region
    _, stats = policy_loss(policy, b, advantages_pg, 0.5, kl_coef=0.0)
    assert stats["clip_frac"] == 0.0


def test_advantages_are_scaled_by_the_given_spread(logged):
    model_dir, ex = logged
    policy = load_policy(str(model_dir), TrainConfig())
    b = collate(ex, 0)
    _, one = policy_loss(policy, b, advantages_pg, 0.5, kl_coef=0.0)
    _, tenth = policy_loss(policy, b, advantages_pg, 0.5, kl_coef=0.0, scale=10.0)
    assert tenth["advantage"] == pytest.approx(one["advantage"] / 10, rel=1e-5)


def test_negative_advantages_are_weighted_and_positive_ones_kept(logged):
    """``negative_weight`` scales only the pushes down: 0 learns from good lines only, so a
    completion whose every token is below the baseline gets no gradient at all."""
    model_dir, ex = logged
    policy = load_policy(str(model_dir), TrainConfig())
    b = collate(ex, 0)  # rewards 1.0, 0.0, 0.5 around the baseline 0.5: +0.5, −0.5, 0
    mask = b.mask.bool()
    _, full = policy_loss(policy, b, advantages_pg, 0.5, kl_coef=0.0)
    _, half = policy_loss(policy, b, advantages_pg, 0.5, kl_coef=0.0, negative_weight=0.5)
    per_row = mask.sum(1).float()
    expect = float((0.5 * per_row[0] - 0.25 * per_row[1]) / per_row.sum())
    assert half["advantage"] == pytest.approx(expect, rel=1e-5)
    assert full["advantage"] < half["advantage"]
    # with weight 0, the low-reward completion (row 1) contributes no gradient
    only_bad = copy.copy(b)
    only_bad.mask = torch.zeros_like(b.mask)
    only_bad.mask[1] = b.mask[1]
    policy.zero_grad()
    loss, _ = policy_loss(policy, only_bad, advantages_pg, 0.5, kl_coef=0.0, negative_weight=0.0)
    loss.backward()
    grads = [p.grad for p in policy.parameters() if p.requires_grad and p.grad is not None]
    assert all(float(g.abs().max()) == 0.0 for g in grads)
    with pytest.raises(TrainConfigError, match="negative_weight"):
        TrainConfig(negative_weight=1.5).validate()
