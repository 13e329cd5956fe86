"""What our two TRL paths (GRPO, KTO) share: the step callback and the run's report.

TRL's trainers log a dict per step; our progress bars take ``on_step(step, numbers)`` and
the nightly report takes a :class:`TrainReport`, the same shape our own loop returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .lora import peak_memory_mb, save_adapter
from .train import TrainReport

__all__ = ["numbers", "step_callback", "train_and_report"]

OnStep = Callable[[int, dict[str, float]], None]


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of one TRL log row, as floats."""
    return {k: float(v) for k, v in row.items() if isinstance(v, int | float)}


def step_callback(on_step: OnStep | None) -> Any:
    """A TrainerCallback handing each logged step's numbers to ``on_step``."""
    from transformers import TrainerCallback

    class _Steps(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if on_step and logs and "loss" in logs:
                on_step(state.global_step, numbers(logs))

    return _Steps()


def train_and_report(
    trainer: Any,
    out_dir: Path,
    base_model: str,
    device: Any,
    tokens: Callable[[], int],
) -> TrainReport:
    """Run ``trainer`` (its own printer off: our bars report the steps), save the adapter
    with ``base_model`` named in its config, and report; ``tokens()`` counts what it saw."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    save_adapter(trainer.model, Path(out_dir), base_model)
    n = tokens()
    return TrainReport(
        adapter_dir=Path(out_dir),
        steps=trainer.state.global_step,
        tokens=n,
        seconds=seconds,
        tokens_per_s=n / max(seconds, 1e-9),
        peak_memory_mb=peak_memory_mb(device),
        history=[numbers(row) for row in trainer.state.log_history if "loss" in row],
    )
