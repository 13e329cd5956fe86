"""KTO on the crowd's per-line verdicts: TRL's KTOTrainer, fed the served token ids.

KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
arXiv:2402.01306) learns from unpaired desirable / undesirable examples, which is what a
👍 / 👎 is. With the implied reward r(x, y) = log π(y|x) − log π_ref(y|x) and z₀ an
estimate of KL(π ‖ π_ref) (from mismatched pairs of the batch, detached), the loss is

    L = λ_D (1 − σ(β (r − z₀)))  for a desirable y,
        λ_U (1 − σ(β (z₀ − r)))  for an undesirable y.

**At which level: the line.** The crowd rates lines, and the aggregation gives each line
a posterior of being right; a completion is a run of lines of which some are right and
some wrong. One KTO example per rated line: x is the served prompt plus the completion's
earlier lines (the context the model had when it wrote the line), y the line's tokens,
desirable when the posterior is ≥ 0.5. A completion-level label would call a five-line
completion with one wrong line "undesirable" and push down its four right lines with it.
Lines whose posterior lies within ``margin`` of 0.5 say nothing either way and are left
out. The developers' corrections add the same kind of rows, a pair per rewritten line
(:mod:`crlhf_trainer.corrections`, :func:`with_corrections`).

**Why we do not let TRL tokenize.** KTOTrainer takes text, re-tokenizes it and appends EOS
to every completion. Ours are the token ids crlhf-lsp served (BOS and FIM markers
included), and a line is not the end of a completion: an EOS after each line would teach
the model to stop after one line. So the dataset goes in as ids and
``_prepare_dataset`` only adds the mismatched KL completions (TRL's own rotation).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .corrections import CorrectionPair
from .errors import NoTrainingData
from .examples import Example
from .lora import load_policy, resolve_device
from .train import TrainConfig, TrainReport
from .trl_run import step_callback, train_and_report

__all__ = ["LineExample", "kto_lines", "train_kto", "with_corrections"]


@dataclass(frozen=True)
class LineExample:
    """One rated line as KTO sees it: its context, its tokens, the crowd's verdict."""

    prompt_ids: list[int]
    completion_ids: list[int]
    label: bool


def kto_lines(examples: Sequence[Example], margin: float = 0.1) -> list[LineExample]:
    """Every rated line of ``examples`` whose posterior is at least ``margin`` from 0.5."""
    out: list[LineExample] = []
    for e in examples:
        spans = _line_spans(e.token_line or [0] * len(e.completion_ids))
        for start, end in spans:
            credit = e.token_credit[start] if e.token_credit else e.reward
            if abs(credit - 0.5) < margin or not any(e.completion_ids[start:end]):
                continue
            out.append(
                LineExample(
                    prompt_ids=list(e.prompt_ids) + list(e.completion_ids[:start]),
                    completion_ids=list(e.completion_ids[start:end]),
                    label=credit >= 0.5,
                )
            )
    return out


def with_corrections(
    lines: Sequence[LineExample], pairs: Sequence[CorrectionPair]
) -> list[LineExample]:
    """The crowd's ``lines`` plus each correction pair as two rows of the same context: the
    replacement desirable, the original undesirable.

    The original's row is left out when the crowd already has that line: once is enough
    when the crowd also says 👎, and when the crowd says 👍 (a right line the developer
    preferred to write otherwise) the crowd's verdict on the line stands; the replacement
    is added either way.
    """
    out = list(lines)
    seen = {(tuple(x.prompt_ids), tuple(x.completion_ids)) for x in lines}
    for p in pairs:
        out.append(LineExample(p.prompt_ids, p.chosen_ids, True))
        if (tuple(p.prompt_ids), tuple(p.rejected_ids)) not in seen:
            out.append(LineExample(p.prompt_ids, p.rejected_ids, False))
    return out


def _line_spans(token_line: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of tokens on the same line (``token_line`` is per token)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(token_line) + 1):
        if i == len(token_line) or token_line[i] != token_line[start]:
            spans.append((start, i))
            start = i
    return spans


def _trainer_class() -> type:
    from trl import KTOTrainer

    class _IdsKTOTrainer(KTOTrainer):  # type: ignore[misc, valid-type]
        """KTOTrainer on ids we already have (see the module docstring)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001, ANN202
            if not self.calculate_KL:
                return dataset

            def rotate(batch: dict[str, list]) -> dict[str, list]:
                ids = batch["completion_ids"]
                batch["KL_completion_ids"] = [ids[-1], *ids[:-1]]
                return batch

            size = args.per_device_train_batch_size
            return dataset.map(rotate, batched=True, batch_size=size)

    return _IdsKTOTrainer


def train_kto(
    model: str,
    examples: Sequence[Example],
    config: TrainConfig,
    out_dir: Path,
    *,
    init_adapter: Path | None = None,
    base_model: str | None = None,
    beta: float = 0.1,
    margin: float = 0.1,
    corrections: Sequence[CorrectionPair] = (),
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train a LoRA adapter with TRL's KTOTrainer on the rated lines of ``examples`` and the
    ``corrections`` pairs."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import AutoTokenizer

    config.validate()
    lines = _both_kinds(examples, margin, corrections)
    device = resolve_device(config.device)
    policy = load_policy(model, config, adapter=init_adapter, device=device)
    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [
        {"prompt_ids": x.prompt_ids, "completion_ids": x.completion_ids, "label": x.label}
        for x in lines
    ]
    trainer = _trainer_class()(
        model=policy,
        args=_kto_args(config, Path(out_dir), beta, lines, device),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[step_callback(on_step)],
    )
    n_tokens = sum(len(x.prompt_ids) + len(x.completion_ids) for x in lines)

    def tokens() -> int:  # the share of the lines' tokens the steps went through
        seen = trainer.state.global_step * config.batch_size * config.grad_accum
        return int(n_tokens * min(1.0, seen / len(lines)))

    return train_and_report(trainer, Path(out_dir), base_model or model, device, tokens)


def _both_kinds(
    examples: Sequence[Example], margin: float, corrections: Sequence[CorrectionPair] = ()
) -> list[LineExample]:
    """The rated and corrected lines KTO learns from; at least one liked and one disliked."""
    lines = with_corrections(kto_lines(examples, margin), corrections)
    labels = {x.label for x in lines}
    if len(labels) < 2 or len(lines) < 2:
        raise NoTrainingData(
            f"KTO needs rated lines of both kinds; the {len(examples)} completions and "
            f"{len(corrections)} correction(s) give "
            f"{sum(x.label for x in lines)} desirable and {sum(not x.label for x in lines)} "
            "undesirable lines beyond the margin — use --method pg-line"
        )
    return lines


def _kto_args(
    config: TrainConfig, out_dir: Path, beta: float, lines: Sequence[LineExample], device: Any
) -> Any:
    """KTOConfig from ours; λ_D/λ_U balance desirable and undesirable lines (the paper's
    advice: λ_D n_D / (λ_U n_U) in [1, 4/3]), so a crowd that mostly says 👍 does not
    drown the 👎."""
    from trl import KTOConfig

    n_good = sum(x.label for x in lines)
    n_bad = len(lines) - n_good
    return KTOConfig(
        output_dir=str(out_dir.parent / "kto-trainer"),
        max_steps=config.max_steps,
        per_device_train_batch_size=max(2, config.batch_size),  # KL needs mismatched pairs
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        beta=beta,
        desirable_weight=1.0,
        undesirable_weight=n_good / max(n_bad, 1),
        max_length=config.max_tokens,
        seed=config.seed,
        use_cpu=device.type == "cpu",
        bf16=config.mixed_precision == "bf16",
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        remove_unused_columns=False,
        gradient_checkpointing=False,  # as our own loop: LoRA on a small model needs no recompute
    )
