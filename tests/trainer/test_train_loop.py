"""One short training run moves the policy the way the rewards say."""

from __future__ import annotations

import pytest
import torch
from crlhf_trainer.errors import TrainConfigError
from crlhf_trainer.lora import load_policy
from crlhf_trainer.policy import collate, token_logprobs
from crlhf_trainer.train import TrainConfig, train
from safetensors.torch import load_file
from train_helpers import PROMPTS, examples, sample, tiny

# a large lr moves the tiny model far on purpose: no early stop on KL here (tested below)
CFG = dict(
    max_steps=12, batch_size=4, grad_accum=1, lr=5e-3, warmup_steps=1, kl_coef=0.01, kl_stop=1e9
)


@pytest.fixture(scope="module")
def logged():
    model = tiny()
    return model, sample(model, PROMPTS[:4], 2, max_new_tokens=12)


def _logps(model_dir, adapter, ex):
    policy = load_policy(str(model_dir), TrainConfig(), adapter=adapter, trainable=False)
    with torch.no_grad():
        return token_logprobs(policy, collate(ex, 0))


def test_high_reward_completions_gain_log_probability_over_low_reward_ones(logged, tmp_path):
    model_dir, rows = logged
    rewards = [1.0 if i % 2 == 0 else 0.0 for i in range(len(rows))]
    ex = examples(model_dir, rows, rewards)
    report = train(str(model_dir), ex, TrainConfig(method="pg", **CFG), tmp_path / "a")
    assert report.steps == 12 and report.tokens > 0
    before = torch.tensor([sum(e.logprobs) for e in ex])
    after = _logps(model_dir, tmp_path / "a", ex).sum(1)
    delta = after - before
    high, low = delta[::2].mean(), delta[1::2].mean()
    assert high > low + 1.0 and low < 0, (high, low)  # relative: the gap widens


def test_training_stops_early_when_the_policy_drifts_from_the_base(logged, tmp_path):
    model_dir, rows = logged
    ex = examples(model_dir, rows, [1.0 if i % 2 == 0 else 0.0 for i in range(len(rows))])
    cfg = TrainConfig(method="pg", **CFG | {"kl_stop": 0.3, "kl_backtracks": 0})
    report = train(str(model_dir), ex, cfg, tmp_path / "a")
    assert report.steps < 12 and report.stopped and "KL" in report.stopped
    assert report.history[-1]["kl_mean"] > 0.3 >= max(h["kl_mean"] for h in report.history[:-1])
    assert report.steps == len(report.history) - 2 and "stop" in report.history[-1]
    # the saved adapter is the last one within the limit, not the one that broke it: the
    # weights of a run of that many steps (same data order; with one warm-up step the
    # first two learning rates do not depend on max_steps)
    assert 1 <= report.steps <= 2, report.history
    short = TrainConfig(method="pg", **CFG | {"max_steps": report.steps})
    train(str(model_dir), ex, short, tmp_path / "b")
    saved, one = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in "ab")
    assert all(torch.equal(saved[k], one[k]) for k in one)


def test_past_the_kl_limit_the_update_is_undone_and_the_step_halved(logged, tmp_path):
    """Where a plain stop keeps 3 updates, undoing the one that broke the limit and halving
    the step goes further; every kept state is within the limit."""
    model_dir, rows = logged
    ex = examples(model_dir, rows, [1.0 if i % 2 == 0 else 0.0 for i in range(len(rows))])
    reports = {}
    for halvings in (0, 6):
        cfg = TrainConfig(method="pg", **CFG | {"kl_stop": 1.0, "kl_backtracks": halvings})
        reports[halvings] = train(str(model_dir), ex, cfg, tmp_path / str(halvings))
    plain, halved = reports[0], reports[6]
    assert plain.backtracks == 0 and halved.backtracks >= 1
    assert halved.steps > plain.steps, (plain.history, halved.history)
    kept = [h for h in halved.history if "backtrack" not in h]
    undone = [h for h in halved.history if "backtrack" in h]
    assert len(undone) == halved.backtracks + (halved.stopped is not None)
    assert all(h["kl_mean"] > 1.0 for h in undone) and max(h["kl_mean"] for h in kept) <= 1.0
    lrs = [h["lr"] for h in kept[-2:]]  # the steps after halvings are smaller
    assert max(lrs) <= CFG["lr"] / 2


def test_a_last_update_past_the_limit_is_undone(logged, tmp_path):
    """No later step measures the last update: training measures it before saving."""
    model_dir, rows = logged
    ex = examples(model_dir, rows, [1.0 if i % 2 == 0 else 0.0 for i in range(len(rows))])
    big = CFG | {"max_steps": 1, "lr": 0.5, "kl_stop": 0.5, "kl_backtracks": 10}
    report = train(str(model_dir), ex, TrainConfig(method="pg", **big), tmp_path / "a")
    assert report.steps == 0 and "last update" in report.stopped, report.history
    saved = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    lora_b = [v for k, v in saved.items() if "lora_B" in k]
    assert lora_b and all(torch.count_nonzero(v) == 0 for v in lora_b)  # the base, untouched


def test_rewards_without_spread_train_nothing(logged, tmp_path):
    from crlhf_trainer.errors import NoTrainingData

    model_dir, rows = logged
    ex = examples(model_dir, rows, [0.51 + 0.001 * (i % 2) for i in range(len(rows))])
    with pytest.raises(NoTrainingData, match="nothing to learn"):
        train(str(model_dir), ex, TrainConfig(method="pg", **CFG), tmp_path / "a")


def test_per_line_credit_lowers_wrong_lines_more_than_right_ones(logged, tmp_path):
    model_dir, rows = logged
    # every completion: its first line right (0.95), the rest wrong (0.05)
    ex = examples(model_dir, rows, [0.5] * len(rows), [[0.95] + [0.05] * 20] * len(rows))
    train(str(model_dir), ex, TrainConfig(method="pg-line", **CFG), tmp_path / "a")
    after = _logps(model_dir, tmp_path / "a", ex)
    right, wrong = [], []
    for i, e in enumerate(ex):
        for t, line in enumerate(e.token_line):
            (right if line == 0 else wrong).append(float(after[i, t]) - e.logprobs[t])
    assert right and wrong
    assert sum(wrong) / len(wrong) < sum(right) / len(right)
    assert sum(wrong) / len(wrong) < 0


def test_the_saved_adapter_names_the_real_base_model(logged, tmp_path):
    model_dir, rows = logged
    ex = examples(model_dir, rows[:2], [1.0, 0.0])
    cfg = TrainConfig(max_steps=1, batch_size=2, grad_accum=2)
    train(str(model_dir), ex, cfg, tmp_path / "a", base_model="org/base-model")
    import json

    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "org/base-model"
    assert (tmp_path / "a" / "adapter_model.safetensors").exists()


def test_bad_settings_are_refused_before_any_work():
    with pytest.raises(TrainConfigError, match="unknown method"):
        TrainConfig(method="ppo").validate()
    with pytest.raises(TrainConfigError, match="≥ 1"):
        TrainConfig(max_steps=0).validate()


def test_a_run_stopped_mid_way_resumes_to_the_same_adapter(logged, tmp_path):
    """Issue 16: a checkpoint every N steps that --resume continues exactly."""
    model_dir, rows = logged
    ex = examples(model_dir, rows, [1.0 if i % 2 == 0 else 0.0 for i in range(len(rows))])
    cfg = dict(CFG, max_steps=4, lr=1e-3, checkpoint_every=2)
    whole = train(str(model_dir), ex, TrainConfig(method="pg-line", **cfg), tmp_path / "whole")

    class Killed(Exception):
        pass

    def die_after_three(step, _):
        if step == 3:
            raise Killed  # the step-2 checkpoint is on disk, step 3 is lost

    with pytest.raises(Killed):
        train(
            str(model_dir),
            ex,
            TrainConfig(method="pg-line", **cfg),
            tmp_path / "cut",
            on_step=die_after_three,
        )
    assert not (tmp_path / "cut" / "adapter_model.safetensors").exists()
    resumed = train(
        str(model_dir), ex, TrainConfig(method="pg-line", resume=True, **cfg), tmp_path / "cut"
    )
    assert resumed.steps == whole.steps == 4
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]


def test_resume_without_a_checkpoint_says_what_to_do(logged, tmp_path):
    model_dir, rows = logged
    ex = examples(model_dir, rows[:2], [1.0, 0.0])
    with pytest.raises(TrainConfigError, match="checkpoint-every"):
        train(str(model_dir), ex, TrainConfig(resume=True, max_steps=1), tmp_path / "a")


def _wrong_line_moves(model_dir, rows, tmp_path, importance):
    """Train per-line credit (first line right, the rest wrong); each wrong token's change
    in log-prob, and the run's history."""
    ex = examples(model_dir, rows, [0.5] * len(rows), [[0.95] + [0.05] * 20] * len(rows))
    cfg = TrainConfig(method="pg-line", importance=importance, **CFG)
    report = train(str(model_dir), ex, cfg, tmp_path / importance)
    after = _logps(model_dir, tmp_path / importance, ex)
    moves = [
        float(after[i, t]) - e.logprobs[t]
        for i, e in enumerate(ex)
        for t, line in enumerate(e.token_line)
        if line > 0
    ]
    return torch.tensor(moves), report.history


def test_against_the_starting_policy_the_clip_bounds_how_far_wrong_lines_fall(logged, tmp_path):
    """With the ratio against the current policy (r = 1) the clip never binds and a wrong
    line is pushed down without bound; against the policy the run starts from, a token
    past 1 − ε gets no more gradient from its advantage, so wrong lines fall far less."""
    model_dir, rows = logged
    free, free_history = _wrong_line_moves(model_dir, rows, tmp_path, "policy")
    bounded, history = _wrong_line_moves(model_dir, rows, tmp_path, "start")
    assert all(h["clip_frac"] == 0 for h in free_history)
    assert history[0]["clip_frac"] == 0  # step 1: the policy is where it started, r = 1
    assert max(h["clip_frac"] for h in history) > 0.2, [h["clip_frac"] for h in history]
    assert free.mean() < 0 and bounded.mean() < 0  # both push wrong lines down …
    assert bounded.mean() > free.mean() / 2, (bounded.mean(), free.mean())  # … one far less


def test_an_unknown_importance_is_refused():
    with pytest.raises(TrainConfigError, match="importance 'behaviour'.*start"):
        TrainConfig(importance="behaviour").validate()
