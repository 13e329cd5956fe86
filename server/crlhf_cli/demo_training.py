"""The demo's training step: the nightly run's configuration from the demo's options, and
its stages drawn as progress bars."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crlhf_trainer.evaluate import EvalConfig
from crlhf_trainer.gate import GateConfig
from crlhf_trainer.nightly import NightlyConfig
from crlhf_trainer.train import TrainConfig
from transformers.utils import logging as hf_logging

from crlhf_cli.demo_learning import conventions_suite, correct_suite, guard_suite

if TYPE_CHECKING:
    from rich.progress import Progress

    from crlhf_cli.demo import DemoConfig

__all__ = ["STAGE_LABELS", "nightly_config", "quiet_transformers", "stage_bars", "train_config"]

STAGE_LABELS = {
    "pull": "trainer: pull",
    "train": "trainer: LoRA steps",
    "eval": "trainer: held-out before/after",
}


def quiet_transformers() -> None:
    """The demo draws its own bars: transformers' per-load bars and deprecation notes
    would interleave with them."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def train_config(cfg: DemoConfig) -> TrainConfig:
    return TrainConfig(
        method=cfg.method,
        max_steps=cfg.train_steps,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        lr=cfg.lr,
        kl_stop=cfg.kl_stop,
        warmup_steps=max(1, cfg.train_steps // 8),
        seed=cfg.seed,
        device=cfg.device,
    )


def nightly_config(
    cfg: DemoConfig,
    *,
    store_url: str,
    token: str,
    model: str,
    work_dir: Path,
    train: TrainConfig,
    guard_texts: list[list[str]] | None = None,
    gguf: Path | None = None,
) -> NightlyConfig:
    """The night the demo runs. In ``conventions`` the gate compares the held-out metric and
    two guards: completions that parse and repeat no line (their texts go to
    ``guard_texts``; written by llama.cpp from ``gguf`` when crlhf-lsp serves that file),
    and correct lines preferred to their mutated twins."""
    conventions_scenario = cfg.scenario == "conventions"
    problems = cfg.pass_at_problems()
    benchmarks = ("humaneval", "mbpp") if problems else ()
    suites = {}
    if conventions_scenario:
        suites = {
            "conventions": conventions_suite(cfg.heldout),
            "sound": guard_suite(cfg.guard_prompts, generated=guard_texts, gguf=gguf),
            "correct": correct_suite(cfg.heldout),
        }
    return NightlyConfig(
        store_url=store_url,
        token=token,
        model=model,
        work_dir=work_dir,
        method=cfg.method,
        train=train,
        eval=EvalConfig(
            benchmarks=benchmarks,
            limit=problems or None,
            max_new_tokens=cfg.eval_max_tokens,
            seed=cfg.seed,
            suites=suites,
        ),
        # conventions: the held-out set is whole modules never rated, so every rated
        # completion can train; mbpp keeps a tenth of the rated completions out
        heldout_fraction=0.0 if conventions_scenario else 0.1,
        gate=GateConfig(min_items=cfg.min_items),
    )


def stage_bars(bar: Progress) -> Callable[[str, int, int | None], None]:
    """run_nightly's progress callback: one bar per stage, the earlier ones closed."""
    tasks: dict[str, Any] = {}

    def progress(stage: str, advance: int, total: int | None) -> None:
        if stage not in tasks:
            for task in bar.tasks:  # a new stage: the earlier ones are done
                bar.update(task.id, total=task.completed)
                bar.stop_task(task.id)
            tasks[stage] = bar.add_task(STAGE_LABELS.get(stage, stage), total=total)
        bar.update(tasks[stage], advance=advance, total=total)

    return progress
