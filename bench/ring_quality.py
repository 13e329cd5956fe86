"""Does the ring buffer make suggestions better? Teacher-forced, paired, on the default model.

    .venv/bin/python bench/ring_quality.py [--positions 40] [--model gemma3-270m] [--generate]

The ring buffer (``crlhf.ringBuffer``, :mod:`crlhf_lsp.ring`) puts code from files the
developer recently looked at before the prompt, and pays for it with local prefix: the
prompt keeps its 1,536-token budget. Whether that trade helps depends on what the chunks
hold, so two arms, each position scored with and without the ring (paired):

- **related**: the line to complete calls a function or class defined in another module of
  the same standard-library package (``json.decoder`` using ``scanstring`` from
  ``json.scanner``…), and the developer looked at that definition last: the ring holds its
  chunk, newest, after two chunks from other modules of the package at random lines;
- **unrelated**: any code line of the same files, the ring holding three random chunks of
  the package's other modules (the cost when what was looked at does not matter here).

Each position is a code line in the last two thirds of a module, the cursor after its
indentation, the prompt built by crlhf-lsp's own ``build_prompt`` with the ring's own
``RingBuffer`` rendering (``RING_BUDGET``, the same token counter). Per position:
``Δ = mean log p(the line's tokens | with ring) − (… | without)``, nats/token, with its
90 % bootstrap interval over positions; with ``--generate`` also the share of greedy
first lines equal to the real line. Prints the table, writes ``ring_quality.json``.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from crlhf_cli.learning_stats import mean_interval  # noqa: E402
from crlhf_lsp.completion import PROMPT_BUDGET  # noqa: E402
from crlhf_lsp.prompt import build_prompt  # noqa: E402
from crlhf_lsp.ring import RingBuffer  # noqa: E402
from crlhf_lsp.suggest import RING_BUDGET  # noqa: E402

PACKAGES = (
    "json", "email", "http", "importlib", "logging", "unittest", "concurrent/futures",
    "asyncio", "xml/etree", "urllib", "multiprocessing", "sqlite3", "zoneinfo", "tomllib",
    "xmlrpc", "wsgiref", "dbm", "html", "ctypes", "curses",
)  # fmt: skip


@dataclass
class Position:
    arm: str
    module: str  # path under the standard library
    line: int
    ring: list[tuple[str, int]]  # (module, line) chunks, oldest first

    @property
    def key(self) -> str:
        return f"{self.arm}:{self.module}:{self.line + 1}"


def _modules(package: Path) -> dict[str, list[str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = {}
    for path in sorted(package.glob("*.py")):
        if path.name.startswith("__main__"):
            continue
        out[str(path.relative_to(root))] = path.read_text(encoding="utf-8").split("\n")
    return out


def _definitions(lines: list[str]) -> dict[str, int]:
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return {}
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {n.name: n.lineno - 1 for n in tree.body if isinstance(n, kinds)}


def _code_lines(lines: list[str]) -> list[int]:
    """Lines worth completing: statements in the last two thirds (enough of the file before
    them), not inside a string, not a comment, decorator, ``def`` or ``class`` line."""
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    in_string = {
        n
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        for n in range(node.lineno - 1, (node.end_lineno or node.lineno))
    }
    start = max(40, len(lines) // 3)
    out = []
    for n in range(start, len(lines)):
        s = lines[n].strip()
        if n in in_string or len(s) < 8 or not s[0].isalpha():
            continue
        if not s.startswith(("def ", "class ", "async def ")):
            out.append(n)
    return out


def positions(n: int, seed: int = 0) -> tuple[list[Position], dict[str, list[str]]]:
    """``n`` related and ``n`` unrelated positions over :data:`PACKAGES`, and the files."""
    rng = random.Random(seed)
    root = Path(sysconfig.get_paths()["stdlib"])
    files: dict[str, list[str]] = {}
    related: list[Position] = []
    unrelated: list[Position] = []
    for package in PACKAGES:
        mods = _modules(root / package)
        if len(mods) < 3:
            continue
        files.update(mods)
        defs = {m: _definitions(lines) for m, lines in mods.items()}
        for target, lines in mods.items():
            others = [m for m in mods if m != target]

            def noise(k: int, others: list[str] = others, mods=mods) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
                picked = rng.sample(others, min(k, len(others)))
                return [(m, rng.randrange(len(mods[m]))) for m in picked]

            for line in _code_lines(lines):
                words = set(_identifiers(lines[line]))
                found = [
                    (m, defs[m][w])
                    for m in others
                    for w in sorted(words)
                    if w in defs[m] and w not in defs[target]
                ]
                if found:
                    m, at = rng.choice(found)
                    noisy = noise(2, [o for o in others if o != m])
                    related.append(Position("related", target, line, [*noisy, (m, at)]))
            for line in rng.sample(_code_lines(lines), min(3, len(_code_lines(lines)))):
                unrelated.append(Position("unrelated", target, line, noise(3)))
    rng.shuffle(related)
    rng.shuffle(unrelated)
    return related[:n] + unrelated[:n], files


def _identifiers(line: str) -> list[str]:
    """The names ``line`` calls (a name before ``(``): a use of a sibling's function or
    class, not a variable that happens to share its name."""
    import re

    return re.findall(r"([A-Za-z_]\w*)\s*\(", line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--positions", type=int, default=40, help="per arm (default 40)")
    p.add_argument("--model", help="crlhf_models spec (default: $CRLHF_MODEL or gemma3-270m)")
    p.add_argument("--generate", action="store_true", help="also greedy first-line matches")
    p.add_argument("--out", type=Path, default=Path("ring_quality.json"))
    args = p.parse_args(argv)

    import torch
    from crlhf_models import resolve_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    model = AutoModelForCausalLM.from_pretrained(ref.path).eval()

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def score(prompt: str, target: str) -> tuple[float, str]:
        """Mean log p of ``target`` after ``prompt``; the greedy first line (--generate)."""
        head = tokenizer(prompt)["input_ids"]
        tail = tokenizer(target, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + tail])
        keep = torch.arange(len(head) - 1, len(head) + len(tail) - 1)
        with torch.no_grad():
            logits = model(input_ids=ids, logits_to_keep=keep).logits[0].float()
            picked = logits.gather(1, torch.tensor(tail)[:, None])[:, 0] - logits.logsumexp(-1)
            line = ""
            if args.generate:
                gen = model.generate(
                    torch.tensor([head]), max_new_tokens=24, do_sample=False,
                    pad_token_id=tokenizer.eos_token_id,
                )  # fmt: skip
                line = tokenizer.decode(gen[0, len(head) :], skip_special_tokens=True)
        return float(picked.mean()), line.split("\n")[0]

    chosen, files = positions(args.positions)
    rows: dict[str, list[dict]] = {"related": [], "unrelated": []}
    for pos in tqdm(chosen, desc="positions", unit="pos"):
        lines = files[pos.module]
        text = lines[pos.line]
        indent = text[: len(text) - len(text.lstrip())]
        prefix = "\n".join(lines[: pos.line]) + "\n" + indent
        suffix = "\n".join(lines[pos.line + 1 :])
        target = text.strip()
        ring = RingBuffer()
        for module, at in pos.ring:
            ring.pick(module, module, [x + "\n" for x in files[module]], at)
        context = ring.context(pos.module, pos.module, "python", RING_BUDGET, count)
        result = {"key": pos.key, "ring_tokens": count(context)}
        for name, ctx in (("without", ""), ("with", context)):
            prompt = build_prompt(
                prefix, suffix, count_tokens=count, budget=PROMPT_BUDGET, context=ctx
            )
            result[name], result[name + "_line"] = score(prompt.text, target)
        result["target"] = target
        rows[pos.arm].append(result)
    console = Console()
    table = Table(
        title=f"ring buffer, {ref.model_id}: Δ mean log p of the real line (with − without)"
    )
    for col in (
        "positions",
        "n",
        "ring tokens",
        "Δ nats/token, 90% CI",
        "exact line without → with",
    ):
        table.add_column(col)
    summary = {}
    for arm, rs in rows.items():
        if not rs:
            continue
        delta = mean_interval([[r["with"] - r["without"] for r in rs]])
        match = {
            k: sum(r[k + "_line"].strip() == r["target"] for r in rs) / len(rs)
            for k in ("without", "with")
        }
        tokens = sum(r["ring_tokens"] for r in rs) / len(rs)
        summary[arm] = {"n": len(rs), "delta": delta.mean, "low": delta.low, "high": delta.high,
                        "ring_tokens": tokens, "exact": match}  # fmt: skip
        table.add_row(
            arm, str(len(rs)), f"{tokens:.0f}", str(delta),
            f"{match['without']:.0%} → {match['with']:.0%}" if args.generate else "–",
        )  # fmt: skip
    console.print(table)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    console.print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
