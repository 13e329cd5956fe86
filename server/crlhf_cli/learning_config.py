"""The learning benchmark's configuration: its arms, crowds, training methods and sizes.

What each arm credits is in :mod:`crlhf_cli.learning_arms`; the run itself in
:mod:`crlhf_cli.learning`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crlhf_cli.crowd import DEFAULT_MIX
from crlhf_cli.services import DemoError

__all__ = [
    "ARMS",
    "CORRECTIONS_ARM",
    "CROWDS",
    "IMPORTANCE",
    "METHODS",
    "SCENARIOS",
    "LearningConfig",
    "Log",
]

ARMS = ("truth", "em2", "mv", "single", "random")
CORRECTIONS_ARM = "corrections"
"""An arm on request only (``--arms …,corrections``): no credit from the ratings, KTO on
the developer's correction pairs alone (``--corrections``)."""
CROWDS: dict[str, dict[str, float]] = {
    "default": dict(DEFAULT_MIX),
    "hostile": {"reliable": 0.3, "mediocre": 0.1, "adversary": 0.4, "always_up": 0.2},
}

Log = Callable[[str], None]


METHODS = ("pg-line", "pg", "kto")
"""Training methods an arm can use: our loop's two variants, or TRL's KTO on rated lines."""

SCENARIOS = ("conventions", "execution")
"""What is completed, judged and scored (:mod:`crlhf_cli.learning_scenarios`)."""

_SAMPLING = {"conventions": (1, 0.0), "execution": (4, 0.8)}
"""Each scenario's own completions per prompt and temperature: execution needs rewards that
vary between samples of one problem, conventions judges greedy ghost text."""


IMPORTANCE = ("policy", "start")
"""The trainer's ``importance`` modes the bench can use: its completions are greedy or from
llama.cpp, so their logged log-probs are no π_old (``logged`` is left out)."""


@dataclass
class LearningConfig:
    work_dir: Path = Path("crlhf-learning")
    scenario: str = "conventions"
    model: str | None = None  # crlhf_models spec: None → $CRLHF_MODEL or the default
    backend: str = "auto"  # crlhf-lsp's backend for the completions
    prompts: int = 48  # training-side prompts completed by crlhf-lsp
    heldout: int = 60  # held-out reference functions scored teacher-forced
    honeypots: int = 16
    annotators: int = 12
    redundancy: int = 3  # crowd ratings per completion (the label budget)
    max_honeypots: int = 6  # honeypots one annotator answers at most
    max_tokens: int = 48  # completion tokens (crlhf-lsp's maxTokens)
    samples: int = 0  # completions per prompt, each its own seed; 0: the scenario's own
    temperature: float = -1.0  # of those completions; below 0: the scenario's own
    eval_samples: int = 4  # execution: samples per held-out problem (n of pass@1)
    eval_temperature: float = 0.8  # execution: of those samples
    eval_max_tokens: int = 128  # execution: most tokens per held-out sample
    crowds: tuple[str, ...] = ("default", "hostile")
    arms: tuple[str, ...] = ARMS
    methods: tuple[str, ...] = ("pg-line",)
    seeds: int = 3
    first_seed: int = 0  # seeds first_seed … first_seed + seeds − 1 (a later run adds seeds)
    steps: int = 12  # what the documented runs used since stop 22
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    kl_coef: float = 0.05
    kl_stop: float = 1.0  # nats/token: Gemma 3 270M passes 0.5 within two steps at lr 2e-4
    kl_backtracks: int = 4  # past kl_stop, undo the update and halve the step, this often
    importance: str = "policy"  # the PPO ratio's π_old (crlhf_trainer.train.IMPORTANCE)
    negative_weight: float = 1.0  # multiplies advantages below 0 (0: good lines only)
    corrections: float = 0.0  # share of fixable rule-breaking lines a developer rewrites
    max_train_tokens: int = 320  # prompt + completion kept for training
    max_eval_tokens: int = 256  # of each held-out function
    device: str = "cpu"

    def sampling(self) -> tuple[int, float]:
        """(completions per prompt, temperature), the scenario's own where not set."""
        samples, temperature = _SAMPLING[self.scenario]
        return (self.samples or samples, temperature if self.temperature < 0 else self.temperature)

    def validate(self) -> LearningConfig:
        if self.scenario not in SCENARIOS:
            raise DemoError(f"unknown scenario {self.scenario!r}; use one of {SCENARIOS}")
        samples, temperature = self.sampling()
        if samples > 1 and temperature == 0:
            raise DemoError(
                f"{samples} samples per prompt at temperature 0 are one sample; "
                "set --temperature above 0"
            )
        if self.scenario == "execution" and self.eval_temperature <= 0 and self.eval_samples > 1:
            raise DemoError("pass@1 from several samples needs --eval-temperature above 0")
        unknown = (set(self.arms) - {*ARMS, CORRECTIONS_ARM}) | (set(self.crowds) - set(CROWDS))
        if unknown:
            raise DemoError(f"unknown arm or crowd {sorted(unknown)}; arms {ARMS}, crowds {CROWDS}")
        if set(self.methods) - set(METHODS):
            raise DemoError(f"unknown method in {self.methods}; use of {METHODS}")
        if self.importance not in IMPORTANCE:
            raise DemoError(
                f"importance {self.importance!r}: use {' or '.join(IMPORTANCE)} (the bench's "
                "completions are greedy or from llama.cpp, so their logged log-probs are no π_old)"
            )
        if not 0.0 <= self.corrections <= 1.0:
            raise DemoError(f"corrections {self.corrections}: a share, from 0 to 1")
        if self.corrections and (self.scenario != "conventions" or "kto" not in self.methods):
            raise DemoError(
                "--corrections needs --scenario conventions (its rules say how a developer "
                "fixes a line) and kto in --methods (the trainer learns corrections as KTO pairs)"
            )
        if CORRECTIONS_ARM in self.arms and not self.corrections:
            raise DemoError("the corrections arm trains on corrections: set --corrections above 0")
        if {"truth", "random"} - set(self.arms):
            raise DemoError("recovery needs the truth and random arms; keep both in --arms")
        return self
