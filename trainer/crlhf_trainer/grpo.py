"""The alternative algorithm: TRL's GRPOTrainer, fed the logged completions.

GRPO (Shao et al. 2024, "DeepSeekMath", arXiv:2402.03300) normalises each completion's
reward within the group of completions of the same prompt: A = (r − mean_group) / std.
A prompt with one rated completion has A = 0 and teaches nothing, so this path keeps only
prompts with at least ``group_size`` rated completions (an editor re-asked for the same
spot, or several developers at the same code). Where most prompts have one rating, use
``pg``/``pg-line`` (:mod:`crlhf_trainer.train`), which need no groups.

TRL generates on its own; its experimental ``rollout_func(prompts, trainer)`` replaces
that step. Ours generates nothing: it looks each prompt up among the logged groups and
returns the logged ``prompt_ids``/``completion_ids``/``logprobs`` (the sampling log-probs
crlhf-lsp recorded, or the current policy's own where none were logged: a log-prob of 0
would say the logger was certain) plus each completion's aggregated reward as an extra
field, which the reward function passes through. TRL's sampler repeats every prompt
``num_generations`` times in a row; the k-th repeat gets the group's k-th completion.

Two honest settings (issue 13): TRL 1.16 uses the returned log-probs only for its vLLM
importance correction, so this path is on-policy GRPO on logged completions, no
off-policy correction; and rewards are *not* scaled by the group's standard deviation
(``scale_rewards="none"``, as Dr. GRPO recommends): with two completions per prompt the
default turned any reward difference, 1e-3 included, into advantages of ±0.71.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import NoTrainingData
from .examples import Example
from .lora import load_policy, resolve_device
from .train import TrainConfig, TrainReport
from .trl_run import step_callback, train_and_report

__all__ = ["LoggedRollouts", "grpo_config", "grpo_groups", "policy_logprobs", "train_grpo"]


def grpo_groups(examples: Sequence[Example], group_size: int) -> dict[str, list[Example]]:
    """The prompts with at least ``group_size`` rated completions, each cut to that size."""
    groups: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        groups[e.prompt_key].append(e)
    kept = {k: g[:group_size] for k, g in groups.items() if len(g) >= group_size}
    if not kept:
        raise NoTrainingData(
            f"GRPO needs prompts with ≥ {group_size} rated completions; none of the "
            f"{len(groups)} prompt(s) has that many — use --method pg or pg-line"
        )
    return kept


class LoggedRollouts:
    """A ``rollout_func`` serving logged completions instead of generating."""

    def __init__(self, groups: dict[str, list[Example]]) -> None:
        self.groups = groups
        self.tokens = 0  # prompt and completion tokens served, for the report

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, list]:
        seen: dict[str, int] = defaultdict(int)
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": []}
        out["crlhf_reward"] = []
        for p in prompts:
            group = self.groups[p]
            e = group[seen[p] % len(group)]
            seen[p] += 1
            out["prompt_ids"].append(list(e.prompt_ids))
            out["completion_ids"].append(list(e.completion_ids))
            out["logprobs"].append(
                list(e.logprobs) if e.logprobs else policy_logprobs(trainer.model, e)
            )
            out["crlhf_reward"].append(e.reward)
            self.tokens += len(e.prompt_ids) + len(e.completion_ids)
        return out


def policy_logprobs(model: torch.nn.Module, example: Example) -> list[float]:
    """The model's own log-probs of a completion, as the ``pg`` path uses when none were
    logged (teacher-forced, no gradient)."""
    from .policy import collate, token_logprobs

    pad = model.config.pad_token_id if isinstance(model.config.pad_token_id, int) else 0
    batch = collate([example], pad).to(next(model.parameters()).device)
    with torch.no_grad():
        logp = token_logprobs(model, batch)
    return [float(x) for x in logp[0, : len(example.completion_ids)].cpu()]


def logged_reward(
    prompts: list, completions: list, crlhf_reward: list[float], **_: Any
) -> list[float]:
    """The aggregated crowd reward, passed through from the rollout."""
    return [float(r) for r in crlhf_reward]


def train_grpo(
    model: str,
    examples: Sequence[Example],
    config: TrainConfig,
    out_dir: Path,
    *,
    init_adapter: Path | None = None,
    base_model: str | None = None,
    group_size: int = 2,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train a LoRA adapter with TRL's GRPOTrainer on the logged groups."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    config.validate()
    groups = grpo_groups(examples, group_size)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    policy = load_policy(model, config, adapter=init_adapter, device=device)
    tokenizer = AutoTokenizer.from_pretrained(model)
    rollouts = LoggedRollouts(groups)
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=logged_reward,
        args=grpo_config(config, groups, group_size, out_dir, use_cpu=device.type == "cpu"),
        train_dataset=Dataset.from_dict({"prompt": list(groups)}),
        processing_class=tokenizer,
        rollout_func=rollouts,
        callbacks=[step_callback(on_step)],
    )
    return train_and_report(
        trainer, Path(out_dir), base_model or model, device, lambda: rollouts.tokens
    )


def grpo_config(
    config: TrainConfig,
    groups: dict[str, list[Example]],
    group_size: int,
    out_dir: Path,
    *,
    use_cpu: bool,
) -> Any:
    """TRL's GRPOConfig for our TrainConfig and the logged groups."""
    from trl import GRPOConfig

    max_completion = max(len(e.completion_ids) for g in groups.values() for e in g)
    # One micro-batch holds batch_size completions = batch_size / group_size prompts.
    per_device = max(group_size, config.batch_size - config.batch_size % group_size)
    return GRPOConfig(
        output_dir=str(Path(out_dir).parent / "grpo-trainer"),
        max_steps=config.max_steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=config.grad_accum,
        num_generations=group_size,
        max_completion_length=max_completion,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        beta=config.kl_coef,
        epsilon=config.clip,
        scale_rewards="none",  # see the module docstring
        seed=config.seed,
        use_cpu=use_cpu,
        bf16=config.mixed_precision == "bf16",
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
