"""The learning benchmark's two scenarios: what is completed, judged and scored.

=============  ==========================================  ===============================
scenario       training prompts and their truth            held-out metric (per item)
=============  ==========================================  ===============================
conventions    standard-library functions cut before a     d = −(m_adapter − m_base), m the
               line that breaks a convention; truth: the   teacher-forced margin of rule-
               conventions (:mod:`crlhf_cli.conventions`)  breaking over conforming lines
execution      MBPP training-split problems, several       Δ pass@1 on MBPP's test split,
               samples each at T > 0; truth: running them  n samples at T > 0, unbiased
               (:mod:`crlhf_cli.execution`)                estimator, the same draws per arm
=============  ==========================================  ===============================

Both add the guard (a), the pair preference on held-out code
(:func:`crlhf_cli.learning_eval.pair_margins`), and a gate decision per run
(:func:`crlhf_trainer.gate.gate`): on the guard for ``conventions``, on pass@1 and the guard
for ``execution``, as the nightly trainer would decide on that adapter.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlhf_cli import conventions as conv
from crlhf_cli import conventions_fix
from crlhf_cli.learning_config import LearningConfig
from crlhf_cli.learning_eval import EvalItem, eval_items, line_pair, margins, pair_margins

__all__ = ["Prompt", "Scenario", "Scores", "make_scenario", "pass_at_1_llamacpp"]

GUARD = "heldout/correct"  # the gate's name of the guard (a), as in the demo's gate
PASS1 = "mbpp/pass@1"


@dataclass(frozen=True)
class Prompt:
    """A training prompt: its key, the text crlhf-lsp completes, and how lines are judged."""

    key: str
    prompt: str
    source: Any  # a conventions Function or a DemoProblem


@dataclass
class Scores:
    """One model's held-out scores: the metric per item and the guard's q per item."""

    metric: list[float]
    pair: list[float | None]


@dataclass
class Scenario:
    name: str
    unit: str  # of the metric's improvement, for the tables
    prompts: list[Prompt]
    honeypots: list[Any]
    items: list[EvalItem]
    truth: Callable[[Prompt, str], list[int | None]]
    score: Callable[[Any, Path | None], Scores]  # (transformers model, its adapter folder)
    lower_is_better: bool  # of the raw metric (the improvement is always higher-is-better)
    fixes: Callable[[Prompt, str], list[str | None]] | None = None
    """per line of a completion, a developer's rewrite (conventions: its rules' fix)"""

    def improvement(self, after: Sequence[float], base: Sequence[float]) -> list[float]:
        sign = -1.0 if self.lower_is_better else 1.0
        return [sign * (a - b) for a, b in zip(after, base, strict=True)]

    def gate(self, after: Scores, base: Scores) -> dict[str, Any]:
        """The trainer's gate on this run's adapter against the base (module docstring)."""
        from crlhf_trainer.gate import gate

        paired = [(a, b) for a, b in zip(after.pair, base.pair, strict=True) if b is not None]
        cand = {GUARD: [float(a or 0.0) for a, _ in paired]}
        ref = {GUARD: [b for _, b in paired]}
        if self.name == "execution":
            cand[PASS1], ref[PASS1] = after.metric, base.metric
        return gate(cand, ref).to_json()


def make_scenario(
    cfg: LearningConfig, ref: Any, tokenizer: Any, log: Callable[[str], None]
) -> Scenario:
    """The scenario ``cfg.scenario`` asks for, its prompts, honeypots and held-out items."""
    if cfg.scenario == "execution":
        return _execution(cfg, ref, tokenizer, log)
    return _conventions(cfg, tokenizer)


def _conventions(cfg: LearningConfig, tokenizer: Any) -> Scenario:
    train_side, heldout_side = conv.split(conv.stdlib_functions())
    random.Random(0).shuffle(train_side)
    prompts = [Prompt(f.key, f.prompt, f) for f in train_side[: cfg.prompts]]
    pots = conv.honeypots(train_side[cfg.prompts :], cfg.honeypots)
    items = eval_items(tokenizer, heldout_side, cfg.heldout, cfg.max_eval_tokens)

    def score(model: Any, adapter: Path | None) -> Scores:
        return Scores(margins(model, items), pair_margins(model, items))

    return Scenario(
        "conventions",
        "nats/token",
        prompts,
        pots,
        items,
        lambda p, text: conv.line_truth(text, p.source.head),
        score,
        lower_is_better=True,
        fixes=lambda p, text: conventions_fix.corrections(text, p.source.head),
    )


def _execution(
    cfg: LearningConfig, ref: Any, tokenizer: Any, log: Callable[[str], None]
) -> Scenario:
    from crlhf_trainer.evaluate import EvalConfig, mbpp_problems, run_benchmark
    from crlhf_trainer.sandbox import Sandbox, SandboxUnavailable

    from crlhf_cli import problems as pb
    from crlhf_cli.execution import judge
    from crlhf_cli.services import DemoError

    try:
        sandbox = Sandbox(timeout=10.0, cpu_seconds=10, memory_mb=1024)
    except SandboxUnavailable as exc:  # generated code runs jailed or not at all
        raise DemoError(str(exc)) from None
    train = pb.mbpp_train(cfg.prompts + cfg.honeypots, seed=0)
    prompts = [Prompt(p.task_id, p.prompt, p) for p in train[: cfg.prompts]]
    pots = pb.honeypots(train[cfg.prompts :])
    heldout = mbpp_problems(cfg.heldout)  # MBPP's test split: never a prompt nor a honeypot
    references = {p.task_id: p.reference for p in pb.mbpp_heldout(cfg.heldout)}
    items = [_pair_item(tokenizer, p.task_id, p.prompt, references[p.task_id]) for p in heldout]
    ecfg = EvalConfig(
        benchmarks=("mbpp",),
        limit=cfg.heldout,
        samples=cfg.eval_samples,
        temperature=cfg.eval_temperature,
        max_new_tokens=cfg.eval_max_tokens,
        seed=0,  # the same draws for every arm: paired differences are the adapters' own
    )

    gguf = _gguf_for_eval(cfg, ref)

    def score(model: Any, adapter: Path | None) -> Scores:
        if gguf is not None:
            pass1 = pass_at_1_llamacpp(gguf, adapter, heldout, ecfg, sandbox)
        else:
            per: dict[str, list[float]] = {}
            run_benchmark(model, tokenizer, heldout, ecfg, items=per)
            pass1 = per["pass@1"]
        return Scores(pass1, pair_margins(model, items))

    log(
        f"execution: {len(prompts)} MBPP training problems, {len(heldout)} held out, "
        f"pass@1 sampled by {'llama.cpp' if gguf else 'transformers'}"
    )
    return Scenario(
        "execution",
        "pass@1",
        prompts,
        pots,
        items,
        lambda p, text: judge(p.source, text, sandbox).truth,
        score,
        lower_is_better=False,
    )


def _gguf_for_eval(cfg: LearningConfig, ref: Any) -> Path | None:
    """The GGUF to sample held-out problems with, where crlhf-lsp would serve one."""
    from crlhf_cli.learning_stores import lsp_backend

    backend, model = lsp_backend(cfg, ref)
    return Path(model) if backend == "llamacpp" else None


def pass_at_1_llamacpp(
    gguf: Path, adapter: Path | None, problems: Sequence[Any], ecfg: Any, sandbox: Any
) -> list[float]:
    """Unbiased pass@1 per problem from ``ecfg.samples`` llama.cpp samples (seeds 0 … n−1,
    :func:`crlhf_cli.llamacpp_texts.complete_all`) of the GGUF model with the adapter,
    each program run in ``sandbox``."""
    from crlhf_trainer.evaluate import pass_at_k, truncate

    from crlhf_cli.llamacpp_texts import complete_all

    n = ecfg.samples
    jobs = [(p.prompt, seed) for p in problems for seed in range(n)]
    texts = complete_all(
        gguf,
        adapter,
        jobs,
        max_tokens=ecfg.max_new_tokens,
        temperature=ecfg.temperature,
        stop=lambda i, text: any(s in text for s in problems[i // n].stop),
    )
    out = []
    for k, p in enumerate(problems):
        passed = 0
        for text in texts[k * n : (k + 1) * n]:
            passed += sandbox.run(p.program(truncate(text, p.stop))).passed
        out.append(pass_at_k(n, passed, 1))
    return out


def _pair_item(tokenizer: Any, key: str, prompt: str, reference: str) -> EvalItem:
    """A held-out problem's guard item: a body line of its reference and the line's twin."""
    lines = (prompt + reference.rstrip("\n")).split("\n")
    first = prompt.count("\n")
    body = [n for n in range(first + 1, len(lines)) if lines[n].strip()]
    return EvalItem(key, [], [], [], line_pair(tokenizer, lines, body))
