"""KTO on the crowd's per-line verdicts: one unpaired example per rated line."""

from __future__ import annotations

import json

import pytest
import torch
from crlhf_trainer.errors import NoTrainingData
from crlhf_trainer.examples import Example
from crlhf_trainer.kto import kto_lines, train_kto
from crlhf_trainer.train import TrainConfig
from train_helpers import PROMPTS, examples, sample, tiny


def _example(credit_per_line: list[float], tokens_per_line: int = 2) -> Example:
    lines = [i for i, _ in enumerate(credit_per_line) for _ in range(tokens_per_line)]
    ids = [100 + i for i in range(len(lines))]
    credit = [credit_per_line[ln] for ln in lines]
    return Example("c", [1, 2, 3], ids, sum(credit_per_line) / 3, credit, None, lines, "p")


def test_each_rated_line_is_one_example_in_the_context_it_was_written():
    (a, b, c) = kto_lines([_example([0.9, 0.1, 0.95])])
    assert (a.prompt_ids, a.completion_ids, a.label) == ([1, 2, 3], [100, 101], True)
    assert (b.prompt_ids, b.completion_ids, b.label) == ([1, 2, 3, 100, 101], [102, 103], False)
    assert c.prompt_ids == [1, 2, 3, 100, 101, 102, 103] and c.label


def test_lines_the_crowd_is_unsure_of_teach_nothing():
    got = kto_lines([_example([0.55, 0.45, 0.2])], margin=0.1)
    assert [(x.completion_ids, x.label) for x in got] == [([104, 105], False)]


@pytest.fixture(scope="module")
def rated():
    model = tiny()
    rows = sample(model, PROMPTS[:4], 2, max_new_tokens=12)
    # the crowd likes the completions of the first two prompts and dislikes the others
    credit = [[1.0] * 8 if i < 4 else [0.0] * 8 for i in range(len(rows))]
    return model, examples(model, rows, [c[0] for c in credit], credit)


def test_kto_needs_both_verdicts(rated):
    model, ex = rated
    liked = [e for e in ex if e.reward > 0.5]
    with pytest.raises(NoTrainingData, match="both kinds"):
        train_kto(str(model), liked, TrainConfig(max_steps=1), "unused")


def _implied_reward(policy, lines) -> list[float]:
    """log π(y|x) − log π_ref(y|x) per line, the reference being the adapter switched off."""
    from crlhf_trainer.policy import collate, token_logprobs

    out = []
    for x in lines:
        e = Example("x", x.prompt_ids, x.completion_ids, 0.0, [0.0] * len(x.completion_ids))
        batch = collate([e], 0)
        with torch.no_grad():
            logp = token_logprobs(policy, batch)[0, : len(x.completion_ids)].sum()
            with policy.disable_adapter():
                ref = token_logprobs(policy, batch)[0, : len(x.completion_ids)].sum()
        out.append(float(logp - ref))
    return out


@pytest.mark.slow  # trains TRL's KTOTrainer until the margin moves: ~10 s of CPU
def test_kto_raises_the_liked_lines_over_the_disliked_ones(rated, tmp_path):
    from crlhf_trainer.lora import load_policy

    model, ex = rated
    cfg = TrainConfig(max_steps=6, batch_size=4, grad_accum=1, lr=5e-3, warmup_steps=1)
    report = train_kto(str(model), ex, cfg, tmp_path / "adapter", beta=0.1)
    assert report.steps == 6 and report.tokens > 0 and report.history
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(model)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    policy = load_policy(str(model), cfg, adapter=tmp_path / "adapter", trainable=False)
    lines = kto_lines(ex)
    rewards = _implied_reward(policy.eval(), lines)
    good = [r for r, x in zip(rewards, lines, strict=True) if x.label]
    bad = [r for r, x in zip(rewards, lines, strict=True) if not x.label]
    assert sum(good) / len(good) > sum(bad) / len(bad) + 0.5, (good, bad)
