"""Step 4 of the learning benchmark (:mod:`crlhf_cli.learning`), teacher-forced on held-out
reference bodies: ``m = mean log p(rule-breaking body lines) − mean log p(conforming body
lines)`` per function (nats/token).

And a guard, the issue's pair preference (a): per function, one conforming body line and
its mutated twin (a flipped operator, an off-by-one, a ``return None``: the honeypots'
mutations, :func:`crlhf_cli.problems.mutate`), after the same prefix::

    q = mean log p(correct line) − mean log p(mutated line)      (nats/token)

Training on the conventions should leave q where it was: a fall says the adapter learnt
to prefer broken code, which the conventions metric cannot see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crlhf_cli import conventions as conv

__all__ = ["EvalItem", "Pair", "eval_items", "line_pair", "margins", "pair_margins"]


@dataclass
class Pair:
    """A correct line and its mutated twin, each as the prefix's ids plus the line's."""

    correct: list[int]
    mutated: list[int]
    start: int  # the line's first token position in both (the prefix is shared)


@dataclass
class EvalItem:
    key: str
    ids: list[int]
    breaking: list[int]  # token positions (into ids) on rule-breaking body lines
    conforming: list[int]
    pair: Pair | None = None


def eval_items(
    tokenizer: Any, functions: Sequence[conv.Function], limit: int, max_tokens: int
) -> list[EvalItem]:
    """Held-out functions with both rule-breaking and conforming body lines."""
    out: list[EvalItem] = []
    for f in functions:
        text = f"# {f.module}\n{f.source}\n"
        enc = tokenizer(text, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][:max_tokens], enc["offset_mapping"][:max_tokens]
        starts, pos = [], 0
        for line in text.split("\n"):
            starts.append(pos)
            pos += len(line) + 1
        lines = text.split("\n")
        skip = {n + 1 for n in _docstring_lines(f.source)}  # +1: the module comment line
        kind = {}
        for n, line in enumerate(lines):
            if n < 2 or n in skip or not line.strip() or line.strip().startswith("#"):
                continue  # the module comment, the def line, docstrings, blanks, comments
            kind[n] = "breaking" if conv.breaks(line) else "conforming"
        breaking, conforming = [], []
        for t, (a, b) in enumerate(offsets):
            if b <= a:
                continue  # special tokens
            n = max(k for k, s in enumerate(starts) if s <= a)
            if kind.get(n) == "breaking":
                breaking.append(t)
            elif kind.get(n) == "conforming":
                conforming.append(t)
        if breaking and conforming:
            pair = line_pair(
                tokenizer, lines, sorted(n for n, k in kind.items() if k == "conforming")
            )
            out.append(EvalItem(f.key, list(ids), breaking, conforming, pair))
        if len(out) >= limit:
            break
    return out


def line_pair(tokenizer: Any, lines: list[str], candidates: Sequence[int]) -> Pair | None:
    """The first candidate line that a mutation changes, and its twin, tokenised after the
    same prefix (tokenised once: a token never spans the prefix and the line)."""
    import random

    from crlhf_cli.problems import mutate

    rng = random.Random(0)
    for n in candidates:
        twin = mutate(lines[n], rng)
        if twin is None:
            continue
        prefix = tokenizer("\n".join(lines[:n]) + "\n")["input_ids"]
        tail = {"add_special_tokens": False}
        correct = tokenizer(lines[n] + "\n", **tail)["input_ids"]
        mutated = tokenizer(twin + "\n", **tail)["input_ids"]
        return Pair(prefix + correct, prefix + mutated, len(prefix))
    return None


def _docstring_lines(source: str) -> set[int]:
    """0-based lines of ``source`` (one function) that belong to its docstring."""
    import ast

    try:
        fn = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return set()
    body = getattr(fn, "body", [])
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
    ):
        first = body[0]
        return set(range(first.lineno - 1, (first.end_lineno or first.lineno)))
    return set()


def margins(model: Any, items: Sequence[EvalItem]) -> list[float]:
    """m per item: mean log p of breaking-line tokens − of conforming-line tokens."""
    import torch

    device = next(model.parameters()).device
    out = []
    model.eval()
    with torch.no_grad():
        for it in items:
            targets = [t for t in it.breaking + it.conforming if t > 0]
            ids = torch.tensor([it.ids], device=device)
            # the token at t is predicted by the logit at t − 1; the 262k-wide head runs on
            # those positions only (logits_to_keep takes indices)
            keep = torch.tensor([t - 1 for t in targets], device=device)
            logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits[0].float()
            picked = logits.gather(1, ids[0, targets, None])[:, 0] - logits.logsumexp(-1)
            logp = dict(zip(targets, picked.tolist(), strict=True))
            bad = [logp[t] for t in it.breaking if t > 0]
            good = [logp[t] for t in it.conforming if t > 0]
            out.append(sum(bad) / len(bad) - sum(good) / len(good))
    return out


def pair_margins(model: Any, items: Sequence[EvalItem]) -> list[float | None]:
    """q per item (None without a pair): mean log p of the correct line's tokens − of its
    mutated twin's, after the same prefix."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    out: list[float | None] = []
    with torch.no_grad():
        for it in items:
            if it.pair is None:
                out.append(None)
                continue
            means = []
            for seq in (it.pair.correct, it.pair.mutated):
                ids = torch.tensor([seq], device=device)
                targets = list(range(it.pair.start, len(seq)))
                keep = torch.tensor([t - 1 for t in targets], device=device)
                logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits[0]
                logits = logits.float()
                picked = logits.gather(1, ids[0, targets, None])[:, 0] - logits.logsumexp(-1)
                means.append(float(picked.mean()))
            out.append(means[0] - means[1])
    return out
