"""The LoRA policy update: a small loop over logged completions on accelerate.

Runs as it is on one CPU or GPU; on several GPUs (DDP, DeepSpeed, FSDP) through
``accelerate launch --config_file trainer/configs/<one>.yaml -m crlhf_trainer.cli train …``
(see the README). Each rank reads its own shard of the examples through the prepared
data loader; the reference log-probs come from the same weights with the adapter off.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import NoTrainingData, TrainConfigError
from .examples import Example
from .lora import load_policy, peak_memory_mb, save_adapter, seed_everything
from .policy import RunningBaseline, collate, policy_loss, token_logprobs, variant

__all__ = ["IMPORTANCE", "TrainConfig", "TrainReport", "train"]

IMPORTANCE = ("policy", "logged", "start")
"""What the PPO ratio is taken against (``TrainConfig.importance``)."""


@dataclass
class TrainConfig:
    method: str = "pg"  # pg: per-completion advantage; pg-line: per-line credit
    max_steps: int = 50  # optimizer steps (the data is cycled if it is shorter)
    batch_size: int = 4  # completions per micro-batch and process
    grad_accum: int = 4  # micro-batches per optimizer step
    lr: float = 2e-4  # peak learning rate (LoRA weights only)
    warmup_steps: int = 5  # linear warm-up, then cosine decay to lr / 10
    weight_decay: float = 0.0
    clip: float = 0.2  # PPO clip ε of the importance ratio
    kl_coef: float = 0.05  # β of the k3 KL penalty to the base model
    # policy: ratio against the current policy (reward-weighted regression with a KL
    # proximal term; right for greedy or quantised serving, whose logged log-probs are not
    # the behaviour distribution); logged: PPO ratio against crlhf-lsp's logged log-probs,
    # only for completions sampled at T > 0 by this same unquantised model; start: PPO
    # ratio against the policy this run starts from, so the clip bounds how far one run
    # moves any logged token (a trust region; no off-policy correction claimed)
    importance: str = "policy"
    negative_weight: float = 1.0  # multiplies advantages below 0 (0: learn from good lines only)
    adv_floor: float = 0.1  # advantages are divided by max(sd of the signal, this)
    min_signal: float = 0.01  # below this sd of rewards/credits there is nothing to learn
    # past this rise of the mean KL to the base (nats/token) the last update is undone and
    # the step halved; after kl_backtracks halvings training stops (0: at the first breach)
    kl_stop: float = 0.5
    kl_backtracks: int = 4
    checkpoint_every: int = 0  # save the loop's state every N optimizer steps (0: never)
    resume: bool = False  # continue from <out_dir>.checkpoint
    baseline_momentum: float = 0.9  # EMA of the reward baseline
    max_grad_norm: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"  # peft's shorthand: every linear layer
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    mixed_precision: str = "no"  # no | bf16 | fp16 (GPU): accelerate's autocast
    max_tokens: int = 2048  # prompt + completion: what crlhf-lsp serves (≤ 1,536 + completion)

    def validate(self) -> TrainConfig:
        variant(self.method)  # raises on an unknown method
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise TrainConfigError("max_steps, batch_size and grad_accum must be ≥ 1")
        if self.importance not in IMPORTANCE:
            raise TrainConfigError(
                f"importance {self.importance!r}: use one of {', '.join(IMPORTANCE)}"
            )
        if not 0.0 <= self.negative_weight <= 1.0:
            raise TrainConfigError(f"negative_weight {self.negative_weight}: use 0 … 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise TrainConfigError(f"device {self.device!r}: use auto, cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise TrainConfigError("device cuda asked for, but torch sees no GPU; use --device cpu")
        return self


@dataclass
class TrainReport:
    adapter_dir: Path
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    peak_memory_mb: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str | None = None  # why training ended before max_steps
    backtracks: int = 0  # updates undone (and the step halved) for passing kl_stop
    final_kl: float | None = None  # KL to the base of the saved weights (nats/token)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["adapter_dir"] = str(self.adapter_dir)
        d["final"] = self.history[-1] if self.history else {}
        del d["history"]
        return d


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _forever(loader) -> Iterator:
    while True:
        yield from loader


def train(
    model: str,
    examples: Sequence[Example],
    config: TrainConfig,
    out_dir: Path,
    *,
    init_adapter: Path | None = None,
    base_model: str | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainReport:
    """Fine-tune a LoRA adapter on ``examples`` and save it to ``out_dir``.

    With ``config.checkpoint_every`` the loop's whole state is saved every N optimizer
    steps into ``<out_dir>.checkpoint``; ``config.resume`` continues from there exactly
    (the same weights, optimizer moments, baseline and data order as an uninterrupted run).
    """
    config.validate()
    if not examples:
        raise TrainConfigError("no examples to train on")
    loop = _Loop(model, examples, config, Path(out_dir), init_adapter)
    if config.resume:
        loop.restore()
    while loop.step < config.max_steps and loop.stopped is None:
        logged = loop.one_step()
        if logged is not None and on_step:
            on_step(loop.step, logged)
    if loop.stopped is None:
        loop.check_last_update()
    return loop.finish(base_model or model)


class _Loop:
    """The state of one training run, and its steps (nanoGPT's loop, split to be resumable)."""

    def __init__(
        self,
        model: str,
        examples: Sequence[Example],
        config: TrainConfig,
        out_dir: Path,
        init_adapter: Path | None,
    ) -> None:
        from accelerate import Accelerator
        from torch.utils.data import DataLoader

        self.config, self.out_dir = config, out_dir
        _forget_other_accelerator_state()
        self.accelerator = Accelerator(
            cpu=config.device == "cpu", mixed_precision=config.mixed_precision
        )
        seed_everything(config.seed)
        self.device = self.accelerator.device
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.policy = load_policy(model, config, adapter=init_adapter, device=self.device)
        pad = self.policy.config.pad_token_id
        pad = pad if isinstance(pad, int) else 0
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        if config.importance == "start":
            examples = _anchored(self.policy, examples, pad, config.batch_size, self.device)
        optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        loader = DataLoader(
            list(examples),
            batch_size=config.batch_size,
            shuffle=True,
            collate_fn=lambda rows: collate(rows, pad),
            generator=torch.Generator().manual_seed(config.seed),
        )
        self.wrapped, self.optimizer, loader = self.accelerator.prepare(
            self.policy, optimizer, loader
        )
        self.method = variant(config.method)
        signal = self.method.signal(examples)
        start, spread = float(np.mean(signal)), float(np.std(signal))
        if spread < config.min_signal:
            raise NoTrainingData(
                f"the {len(examples)} completions' {self.method.name} signal has sd "
                f"{spread:.2g} < {config.min_signal:g}: every reward is about the same, "
                "nothing to learn from; rate more (and more varied) completions"
            )
        self.scale = max(spread, config.adv_floor)
        self.baseline = RunningBaseline(start, config.baseline_momentum)
        self.batches = _forever(loader)
        self.history: list[dict[str, float]] = []
        self.stopped: str | None = None
        self.step, self.tokens, self.seconds = 0, 0, 0.0
        self._keep_good()
        self.drawn = 0  # micro-batches taken from the loader (a resume skips as many)
        self.kl_start: float | None = None
        self.lr_scale, self.backtracks = 1.0, 0
        # the KL of one batch says little of the data's (the tiny model of the tests: 0.06
        # on one batch, 0.43 on the other, same weights): the limit is on the mean over
        # the last pass through the data, each step's batch measured once
        self.kl_window: deque[float] = deque(maxlen=max(1, min(len(loader), 16)))
        self.final_kl: float | None = None
        self.wrapped.train()

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir.with_name(self.out_dir.name + ".checkpoint")

    def _keep_good(self) -> None:
        """Remember the weights and optimizer moments last measured within the KL limit.

        DeepSpeed's optimizer keeps its state partitioned across ranks behind its own
        checkpoint API: there only the weights go back, with the moments as they are."""
        from accelerate.utils import DistributedType

        self.good = [p.detach().clone() for p in self.params]
        deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        self.good_optimizer = None if deepspeed else copy.deepcopy(self.optimizer.state_dict())
        self.good_step = self.step

    def _restore_good(self) -> None:
        for p, g in zip(self.params, self.good, strict=True):
            p.data.copy_(g)
        if self.good_optimizer is not None:
            self.optimizer.load_state_dict(self.good_optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.step = self.good_step

    def _next_batch(self) -> Any:
        self.drawn += 1
        return next(self.batches)

    def one_step(self) -> dict[str, float] | None:
        """One optimizer step; None when the KL limit undid the last update instead."""
        cfg, acc = self.config, self.accelerator
        t0 = time.perf_counter()
        lr = _lr_at(self.step, cfg) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        logged = self._gradients([self._next_batch() for _ in range(cfg.grad_accum)])
        # logged["kl"] is the KL of the weights this step measured (before its update).
        if self._past_kl_limit(logged):
            self._back_off(logged)
            self.seconds += time.perf_counter() - t0
            return None
        self._keep_good()
        grad_norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        # DeepSpeed returns None before its first accumulation boundary
        logged |= {"grad_norm": _float_or_nan(grad_norm), "lr": lr}
        logged["baseline"] = self.baseline.value
        self.history.append(logged)
        self.step += 1
        self.seconds += time.perf_counter() - t0
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save_checkpoint()
        return logged

    def _gradients(self, batches: list[Any]) -> dict[str, float]:
        """Accumulate one step's gradients over its micro-batches; the mean of their stats."""
        cfg, acc = self.config, self.accelerator
        logged: dict[str, float] = {}
        for micro, batch in enumerate(batches):
            # DDP all-reduces on every backward unless told otherwise: only the last
            # micro-batch of a step should pay for the sync.
            sync = micro == len(batches) - 1
            with nullcontext() if sync else acc.no_sync(self.wrapped):
                loss, stats = policy_loss(
                    self.wrapped,
                    batch,
                    self.method.advantage,
                    self.baseline.value,
                    clip=cfg.clip,
                    kl_coef=cfg.kl_coef,
                    use_logged=cfg.importance != "policy",
                    peft_model=self.policy,
                    scale=self.scale,
                    negative_weight=cfg.negative_weight,
                )
                acc.backward(loss / len(batches))
            # every rank tracks the same baseline: the mean over all ranks' micro-batches
            self.baseline.update(_mean_across_ranks(acc, self.method.batch_signal(batch)))
            self.tokens += batch.n_tokens
            for k, v in stats.items():
                logged[k] = logged.get(k, 0.0) + v / len(batches)
        return logged

    def _past_kl_limit(self, logged: dict[str, float]) -> bool:
        """Whether the weights just measured are past the limit: the mean KL of the last
        pass's batches (this one's included), counted from where this run started (a
        continued adapter begins some way from the base). Every rank decides on the same
        mean. Only kept weights' measurements stay in the window."""
        kl = _mean_across_ranks(self.accelerator, logged["kl"])
        if self.kl_start is None:
            self.kl_start = kl
        recent = [*self.kl_window, kl][-(self.kl_window.maxlen or 1) :]
        logged["kl_mean"] = sum(recent) / len(recent)
        past = logged["kl_mean"] - self.kl_start > self.config.kl_stop
        if not past:
            self.kl_window.append(kl)
        return past

    def _back_off(self, logged: dict[str, float]) -> None:
        """Undo the last update (weights and Adam moments) and halve the step for the rest of
        the run; stop once ``kl_backtracks`` halvings did not keep the policy within the
        limit, with the last weights measured within it.

        A plain stop here ended the learning bench's informative arms (truth, em2) after
        6–10 of 12 updates while random credit, which moves the policy less, ran all 12:
        the arms were compared at unequal training. When a breach comes from one step too
        large, a smaller one continues the run (the tiny model of the tests: 6 updates
        instead of 3). When the policy has spent its KL budget, smaller steps breach again
        and the halvings run out: the run ends as the plain stop did, ``kl_backtracks``
        steps later. Making the step smaller without undoing it, or weighting the KL term
        more (PPO's adaptive penalty), did not bring the tiny model back within the limit."""
        undone = self.step
        self._restore_good()
        logged["backtrack"] = 1.0
        if self.backtracks >= self.config.kl_backtracks:
            self.stopped = (
                f"KL {logged['kl']:.3g} rose past {self.config.kl_stop:g} nats/token at step "
                f"{undone + 1} after {self.backtracks} halving(s) of the step; kept the "
                f"weights after {self.step} update(s)"
            )
            logged["stop"] = 1.0
        else:
            self.backtracks += 1
            self.lr_scale /= 2
        self.history.append(logged)

    def check_last_update(self) -> None:
        """The last update's weights were never measured: measure them on one more batch
        (forward only) and go back to the last weights within the limit if they broke it."""
        cfg = self.config
        if cfg.kl_coef <= 0 or self.step == 0:
            return
        with torch.no_grad():
            _, stats = policy_loss(
                self.wrapped,
                self._next_batch(),
                self.method.advantage,
                self.baseline.value,
                kl_coef=cfg.kl_coef,
                peft_model=self.policy,
                scale=self.scale,
            )
        self.final_kl = stats["kl"]
        if self._past_kl_limit(stats):
            self.final_kl = None  # the kept weights' KL was measured when they were made
            self._restore_good()
            self.history.append(stats | {"backtrack": 1.0, "stop": 1.0})
            self.stopped = (
                f"KL {stats['kl']:.3g} after the last update passed {cfg.kl_stop:g} "
                f"nats/token; kept the weights after {self.step} update(s)"
            )

    def save_checkpoint(self) -> None:
        self.accelerator.save_state(str(self.checkpoint_dir / "state"))
        if self.accelerator.is_main_process:
            progress = {
                "step": self.step,
                "tokens": self.tokens,
                "seconds": self.seconds,
                "baseline": self.baseline.value,
                "kl_start": self.kl_start,
                "lr_scale": self.lr_scale,
                "backtracks": self.backtracks,
                "drawn": self.drawn,
                "kl_window": list(self.kl_window),
                "history": self.history,
            }
            tmp = self.checkpoint_dir / "progress.json.tmp"
            tmp.write_text(json.dumps(progress))
            tmp.replace(self.checkpoint_dir / "progress.json")  # atomic: a crash keeps the last
        self.accelerator.wait_for_everyone()

    def restore(self) -> None:
        """Continue from the checkpoint: weights, optimizer, RNG, baseline, data position."""
        progress_file = self.checkpoint_dir / "progress.json"
        if not progress_file.exists():
            raise TrainConfigError(
                f"--resume: no checkpoint in {self.checkpoint_dir}; train with "
                "--checkpoint-every N first"
            )
        self.accelerator.load_state(str(self.checkpoint_dir / "state"))
        progress = json.loads(progress_file.read_text())
        for _ in range(progress.get("drawn", progress["step"] * self.config.grad_accum)):
            self._next_batch()  # the same seeded order, advanced to where it stopped
        self.step, self.tokens = progress["step"], progress["tokens"]
        self.seconds, self.history = progress["seconds"], progress["history"]
        self.baseline.value = progress["baseline"]
        self.kl_start = progress["kl_start"]
        self.lr_scale = progress.get("lr_scale", 1.0)  # a checkpoint of an older version
        self.backtracks = progress.get("backtracks", 0)
        self.kl_window.extend(progress.get("kl_window", []))
        self._keep_good()  # a resumed run's weights were within the limit when saved

    def finish(self, base_model: str) -> TrainReport:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_adapter(acc.unwrap_model(self.wrapped), self.out_dir, base_model)
        return TrainReport(
            adapter_dir=self.out_dir,
            steps=self.step,  # the updates in the saved weights
            tokens=self.tokens,
            seconds=self.seconds,
            tokens_per_s=self.tokens / max(self.seconds, 1e-9),
            peak_memory_mb=peak_memory_mb(self.device),
            history=self.history,
            stopped=self.stopped,
            backtracks=self.backtracks,
            final_kl=self.final_kl,
        )


def _anchored(
    policy: torch.nn.Module,
    examples: Sequence[Example],
    pad: int,
    batch_size: int,
    device: torch.device,
) -> list[Example]:
    """The examples with the log-probs of the policy this run starts from in place of the
    logged ones: ``importance="start"``'s old policy π_old of PPO's ratio π_θ/π_old.

    With the ratio against the current policy (``importance="policy"``) ``r = 1`` on every
    step, so the clip never binds: a line credited below the baseline is pushed down
    without bound, and on Gemma 3 270M the mass went to repeated and unparsable lines
    (docs/benchmarks.md). Against π_old, a token whose probability has moved beyond
    ``1 ± ε`` of where it started gets no more gradient from its advantage. Computed once,
    teacher-forced, by every rank on all examples (a forward pass each; before the data is
    sharded). The parent adapter, where there is one, is π_old: the trust region is
    per run, not to the base (that is the KL term's job)."""
    anchored: list[Example] = []
    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            rows = list(examples[i : i + batch_size])
            logp = token_logprobs(policy, collate(rows, pad).to(device)).float().cpu()
            anchored += [
                replace(e, logprobs=logp[j, : len(e.completion_ids)].tolist())
                for j, e in enumerate(rows)
            ]
    policy.train(was_training)
    return anchored


def _float_or_nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _mean_across_ranks(accelerator: Any, value: float) -> float:
    """Every rank must take the same early-stop decision, or DDP hangs on the next sync."""
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], device=accelerator.device)
    return float(accelerator.reduce(t, reduction="mean"))


def _forget_other_accelerator_state() -> None:
    """accelerate keeps one process-wide state: a TRL trainer (kto, grpo) run earlier in the
    same process sets it its own way, and our Accelerator then refuses to start ("already
    been initialized"; the learning bench trains pg-line arms after kto ones). In a single
    process that state holds nothing of ours, so it is cleared; under a distributed launch
    it is the launch's and stays."""
    import os

    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:  # not under a distributed launch
        AcceleratorState._reset_state()
