"""What the demo shows of learning (scenario ``conventions``): the held-out metric before and
after with its paired interval, majority-vote and random credit trained at the same label
budget, the guards against degenerate learning, and one completion before and after.

The held-out metric is the gate's ``heldout/conventions``: on standard-library functions
from modules never rated, ``−(mean log p(rule-breaking lines) − mean log p(conforming
lines))`` per function, nats/token, higher is better (:mod:`crlhf_cli.learning_eval`).

Guards, on greedy completions of held-out prompts by the base model and the candidate
(learning to avoid a bad line can mean learning to degenerate):

- ``violation_rate``: share of judged lines that break a convention;
- ``parse_rate``: share of completions after which the function still parses (a block
  left open at the end is closed with ``pass`` first);
- ``repetition``: share of completions with a non-blank line repeated;
- ``rewritten``: of the prompts whose first line the base broke and the candidate kept,
  the share where the candidate wrote code there (not a blank, nor a repeated line).
"""

from __future__ import annotations

import ast
import functools
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crlhf_lsp.postprocess import Cutter

from crlhf_cli import conventions as conv

__all__ = [
    "CORRECT",
    "GUARD",
    "METRIC",
    "conventions_suite",
    "correct_suite",
    "generation_guards",
    "ghost_text",
    "guard_flags",
    "guard_scores",
    "guard_suite",
    "heldout_prompts",
    "served_adapter_texts",
    "served_texts",
    "sound",
]

METRIC = "heldout/conventions"
GUARD = "heldout/sound"
"""The gate's guard: per held-out prompt, 1 when the greedy completion parses and repeats no
line, else 0 (higher is better). A candidate that learned to avoid a bad line by
degenerating (a broken block, a line said twice) loses here and is refused."""
CORRECT = "heldout/correct"
"""The gate's second guard: a correct line preferred to its mutated twin (``correct_suite``).
A candidate that learned the conventions by learning to prefer broken code loses here."""


@functools.lru_cache(maxsize=4)
def _eval_items(tokenizer_name: str, limit: int, max_tokens: int) -> tuple[Any, ...]:
    from transformers import AutoTokenizer

    from crlhf_cli.learning_eval import eval_items

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    _, heldout = conv.split(conv.stdlib_functions())
    return tuple(eval_items(tokenizer, heldout, limit, max_tokens))


def conventions_suite(limit: int, max_tokens: int = 256) -> Callable[[Any, Any], list[float]]:
    """The trainer's held-out suite: one score per held-out function, higher is better."""
    from crlhf_cli.learning_eval import margins

    def suite(model: Any, tokenizer: Any) -> list[float]:
        items = _eval_items(tokenizer.name_or_path, limit, max_tokens)
        return [-m for m in margins(model, items)]

    return suite


def correct_suite(limit: int, max_tokens: int = 256) -> Callable[[Any, Any], list[float]]:
    """The gate's guard ``CORRECT``: per held-out function with a pair, q = mean log p of a
    correct body line − of its mutated twin (:func:`crlhf_cli.learning_eval.pair_margins`),
    nats/token, higher is better."""
    from crlhf_cli.learning_eval import pair_margins

    def suite(model: Any, tokenizer: Any) -> list[float]:
        items = _eval_items(tokenizer.name_or_path, limit, max_tokens)
        return [q for q in pair_margins(model, items) if q is not None]

    return suite


def guard_suite(
    n: int,
    max_new_tokens: int = 48,
    generated: list[list[str]] | None = None,
    gguf: Path | None = None,
) -> Callable[[Any, Any], list[float]]:
    """The trainer's guard suite (``GUARD``): one 0/1 score per held-out prompt.

    With ``gguf`` (the file crlhf-lsp's llamacpp backend serves) the completions are
    llama.cpp's, with the model's LoRA as a GGUF LoRA (:func:`served_texts`): the gate then
    judges the text a developer would see, not the trainer's f32 copy's, whose greedy
    texts differed from the served ones on 19 of 24 prompts (docs/benchmarks.md).
    Each call's completions are appended to ``generated`` when given (the trainer evaluates
    the baseline first, then the candidate), so the demo's guard figures need no second
    generation."""
    functions = heldout_prompts(n)

    def suite(model: Any, tokenizer: Any) -> list[float]:
        prompts = [f.prompt for f in functions]
        if gguf is None:
            texts = generate(model, tokenizer, prompts, max_new_tokens)
        else:
            texts = served_texts(gguf, model, prompts, max_new_tokens)
        if generated is not None:
            generated.append(texts)
        return sound(guard_flags(functions, texts))

    return suite


def heldout_prompts(n: int) -> list[conv.Function]:
    _, heldout = conv.split(conv.stdlib_functions())
    return heldout[:: max(1, len(heldout) // max(1, n))][:n]


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations, post-processed as crlhf-lsp serves them (:func:`ghost_text`)."""
    import torch

    device = next(model.parameters()).device
    out = []
    model.eval()
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").to(device)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        with torch.no_grad():
            gen = model.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad
            )
        text = tokenizer.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        out.append(ghost_text(prompt, text))
    return out


def served_texts(gguf: Path, model: Any, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations as crlhf-lsp's llamacpp backend serves them: the GGUF base
    model and, when ``model`` is a PEFT model, its LoRA converted to a GGUF LoRA (as an
    editor's hot swap converts it); post-processed like :func:`generate`."""
    with tempfile.TemporaryDirectory(prefix="crlhf-guard-") as tmp:
        adapter = None
        if hasattr(model, "peft_config"):  # a plain transformers model is the base itself
            model.save_pretrained(tmp)
            adapter = Path(tmp)
        return served_adapter_texts(gguf, adapter, prompts, max_new_tokens)


def served_adapter_texts(
    gguf: Path, adapter: Path | None, prompts: Sequence[str], max_new_tokens: int
) -> list[str]:
    """:func:`served_texts` for an adapter folder (``None``: the base model). Generation
    stops where crlhf-lsp's would (once more tokens cannot change the suggestion)."""
    from crlhf_cli.llamacpp_texts import complete_all

    cutters = [Cutter.around(p, "") for p in prompts]
    texts = complete_all(
        gguf,
        adapter,
        [(p, 0) for p in prompts],
        max_tokens=max_new_tokens,
        temperature=0.0,
        stop=lambda i, text: cutters[i].is_complete(text),
    )
    return [c.finish(t, "") for c, t in zip(cutters, texts, strict=True)]


def ghost_text(prompt: str, text: str) -> str:
    """The suggestion crlhf-lsp shows for ``text`` written at the end of ``prompt`` (nothing
    after the cursor): its post-processing (:class:`crlhf_lsp.postprocess.Cutter`) ends a
    completion where its block ends, at a line that repeats the line before it, after two
    blank lines. The guards judge that, not the model's raw tokens: a model that loops on
    one line shows a developer the line once, and what it writes past the end of the
    function is never shown."""
    return Cutter.around(prompt, "").finish(text, "")


def _parses(prompt: str, completion: str) -> bool:
    source = (prompt + completion).rstrip()
    lines = source.split("\n")
    last = lines[-1] if lines else ""
    indent = " " * (len(last) - len(last.lstrip()) + 4)
    body = "\n".join(line for line in lines if not line.startswith("# "))
    for attempt in (body, body + "\n" + indent + "pass"):
        try:
            ast.parse(attempt)
            return True
        except SyntaxError:
            continue
    return False


def _repeats(text: str) -> bool:
    seen = [line.strip() for line in text.split("\n") if line.strip()]
    return len(seen) != len(set(seen))


def guard_flags(functions: Sequence[conv.Function], texts: Sequence[str]) -> dict[str, list[float]]:
    """Per completion, 1.0 or 0.0: whether it parses after its prompt, whether it repeats a
    line (the per-prompt values whose paired changes get intervals)."""
    pairs = list(zip(functions, texts, strict=True))
    return {
        "parses": [float(_parses(f.prompt, x)) for f, x in pairs],
        "repeats": [float(_repeats(x)) for _, x in pairs],
    }


def sound(flags: dict[str, list[float]]) -> list[float]:
    """The gate's ``GUARD`` per prompt from :func:`guard_flags`: 1.0 when the completion
    parses and repeats no line, else 0.0."""
    return [p * (1.0 - r) for p, r in zip(flags["parses"], flags["repeats"], strict=True)]


def guard_scores(functions: Sequence[conv.Function], texts: Sequence[str]) -> dict[str, float]:
    judged = [t for f, x in zip(functions, texts, strict=True) for t in conv.line_truth(x, f.head)]
    judged = [t for t in judged if t is not None]
    flags = guard_flags(functions, texts)
    n = max(1, len(texts))
    return {
        "violation_rate": sum(t < 0 for t in judged) / max(1, len(judged)),
        "parse_rate": sum(flags["parses"]) / n,
        "repetition": sum(flags["repeats"]) / n,
    }


def generation_guards(
    model_path: str,
    adapter: Path | None,
    n: int,
    max_new_tokens: int = 48,
    generated: Sequence[Sequence[str]] = (),
    gguf: Path | None = None,
) -> dict[str, Any]:
    """Guards for the base model and the candidate adapter, a before/after example, and
    every prompt's two completions with their flags (``completions``, for guards.jsonl);
    ``generated`` (before, after), when the gate's guard suite made them, is used as is.
    Otherwise llama.cpp writes them from ``gguf`` when given (what is served), else
    transformers from ``model_path``."""
    functions = heldout_prompts(n)
    prompts = [f.prompt for f in functions]
    if len(generated) == 2 and all(len(g) == len(functions) for g in generated):
        before, after = list(generated[0]), list(generated[1])
    elif gguf is not None:
        before = served_adapter_texts(gguf, None, prompts, max_new_tokens)
        after = served_adapter_texts(gguf, adapter, prompts, max_new_tokens) if adapter else before
    else:
        before, after = _generate_both(model_path, adapter, functions, max_new_tokens)
    b, a = guard_scores(functions, before), guard_scores(functions, after)
    fixed = [
        i
        for i, f in enumerate(functions)
        if (conv.line_truth(before[i], f.head)[:1] == [-1])
        and (conv.line_truth(after[i], f.head)[:1] != [-1])
    ]
    rewritten = [i for i in fixed if after[i].split("\n")[0].strip() and not _repeats(after[i])]
    example = fixed[0] if fixed else 0
    flags = guard_flags(functions, before), guard_flags(functions, after)
    completions = [
        {"task_id": f.key, "before": before[i], "after": after[i]}
        | {
            f"{k}_{when}": bool(fl[k][i])
            for when, fl in zip(("before", "after"), flags, strict=True)
            for k in fl
        }
        for i, f in enumerate(functions)
    ]
    return {
        "prompts": len(prompts),
        **{k: {"before": b[k], "after": a[k]} for k in b},
        "rewritten": {"fixed": len(fixed), "rewritten": len(rewritten)},
        "example": {
            "task_id": functions[example].key,
            "prompt": prompts[example],
            "before": before[example],
            "after": after[example],
        },
        "completions": completions,
    }


def _generate_both(
    model_path: str, adapter: Path | None, functions: Sequence[conv.Function], max_new_tokens: int
) -> tuple[list[str], list[str]]:
    from crlhf_trainer.train import TrainConfig, load_policy
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = [f.prompt for f in functions]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path)
    before = generate(base, tokenizer, prompts, max_new_tokens)
    del base
    if adapter is None:
        return before, list(before)
    policy = load_policy(model_path, TrainConfig(), adapter=adapter, trainable=False)
    after = generate(policy, tokenizer, prompts, max_new_tokens)
    del policy
    return before, after


def arm_results(
    work_dir: Path,
    model_path: str,
    train_config: Any,
    collected: Sequence[Any],
    suite: Callable[[Any, Any], list[float]],
    base_items: Sequence[float],
    arms: Sequence[str] = ("mv", "random"),
) -> dict[str, dict[str, float]]:
    """Train each arm on the nightly run's pulled export (same labels, same settings) and
    score it on the held-out suite, paired with the base: {arm: after, delta, interval}."""
    from crlhf_trainer.errors import NoTrainingData
    from crlhf_trainer.examples import build_examples
    from crlhf_trainer.gate import paired_interval
    from crlhf_trainer.pull import WorkDir
    from crlhf_trainer.train import load_policy, train
    from transformers import AutoTokenizer

    from crlhf_cli.learning_arms import arm_rewards

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    out: dict[str, dict[str, float]] = {}
    for arm in arms:
        rewards = arm_rewards(arm, work_dir, collected, seed=train_config.seed)
        examples, _ = build_examples(
            WorkDir(work_dir).completions(),
            rewards,
            tokenizer.decode,
            max_tokens=train_config.max_tokens,
        )
        folder = work_dir.parent / "arms" / arm
        try:
            train(model_path, examples, train_config, folder)
        except NoTrainingData:
            scores = list(base_items)  # nothing to learn: the base model stays
        else:
            policy = load_policy(model_path, train_config, adapter=folder, trainable=False)
            scores = suite(policy, tokenizer)
            del policy
        delta, low, high = paired_interval([a - b for a, b in zip(scores, base_items, strict=True)])
        out[arm] = {
            "after": sum(scores) / max(1, len(scores)),
            "delta": delta,
            "delta_low": low,
            "delta_high": high,
        }
    return out


def learning_summary(
    base: Sequence[float],
    cand: Sequence[float],
    interval: tuple[float, float, float],
    arms: dict[str, Any],
    guards: dict[str, Any],
) -> dict[str, Any]:
    """``summary.json``'s ``learning``: the held-out metric per item before (``base``) and
    after (``cand``), the paired ``(delta, low, high)``, the other arms and the guards."""
    delta, low, high = interval
    return {
        "scenario": "conventions",
        "metric": METRIC,
        "higher_is_better": True,
        "n": len(base),
        "before": sum(base) / len(base),
        "after": sum(cand) / len(cand),
        "delta": delta,
        "delta_low": low,
        "delta_high": high,
        "majority_vote": arms["mv"],
        "random": arms["random"],
        **guards,
    }
