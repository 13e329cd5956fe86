"""The GRPO alternative: TRL's GRPOTrainer fed logged groups through rollout_func."""

from __future__ import annotations

import json

import pytest
from crlhf_trainer.errors import NoTrainingData
from crlhf_trainer.grpo import LoggedRollouts, grpo_groups, train_grpo
from crlhf_trainer.train import TrainConfig
from train_helpers import PROMPTS, examples, sample, tiny


@pytest.fixture(scope="module")
def grouped():
    model = tiny()
    rows = sample(model, PROMPTS[:2], 2, max_new_tokens=8)
    return model, examples(model, rows, [1.0, 0.0, 0.2, 0.9])


def test_rollouts_serve_the_logged_completions_of_each_prompt_in_turn(grouped):
    _, ex = grouped
    groups = grpo_groups(ex, 2)
    key = ex[0].prompt_key
    out = LoggedRollouts(groups)([key, key], trainer=None)
    assert out["completion_ids"] == [ex[0].completion_ids, ex[1].completion_ids]
    assert out["logprobs"][0] == ex[0].logprobs and out["crlhf_reward"] == [1.0, 0.0]


def test_missing_logged_log_probs_are_the_policys_own_not_zero(grouped):
    """A log-prob of 0 would say the logger was certain of every token (issue 16)."""
    import copy
    from types import SimpleNamespace

    import torch
    from crlhf_trainer.policy import collate, token_logprobs
    from transformers import AutoModelForCausalLM

    model_dir, ex = grouped
    unlogged = [copy.deepcopy(e) for e in ex[:2]]
    for e in unlogged:
        e.logprobs = None
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    out = LoggedRollouts(grpo_groups(unlogged, 2))([ex[0].prompt_key], SimpleNamespace(model=model))
    (got,) = out["logprobs"]
    with torch.no_grad():
        want = token_logprobs(model, collate([unlogged[0]], 0))[0].tolist()
    assert got == pytest.approx(want, abs=1e-5) and all(x < 0 for x in got)
    assert got == pytest.approx(ex[0].logprobs, abs=1e-3)  # what the sampler logged


def test_prompts_with_a_single_rated_completion_cannot_feed_grpo(grouped):
    _, ex = grouped
    with pytest.raises(NoTrainingData, match="pg or pg-line"):
        grpo_groups([ex[0], ex[2]], 2)


@pytest.mark.slow  # TRL's GRPOTrainer, generating for every step: ~6 s of CPU
def test_grpo_trains_and_saves_a_peft_adapter(grouped, tmp_path):
    model, ex = grouped
    cfg = TrainConfig(max_steps=2, batch_size=4, grad_accum=1)
    report = train_grpo(str(model), ex, cfg, tmp_path / "adapter")
    assert report.steps == 2 and report.tokens > 0
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(model)
