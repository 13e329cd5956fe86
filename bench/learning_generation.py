"""What the learning bench's adapters generate: the rule-breaking rate of greedy completions.

    .venv/bin/python bench/learning_generation.py WORK_DIR [--prompts 120] [--seeds 0,1,2]
        [--crowd default] [--arms truth,em2,mv,random]

``bench/learning.py`` scores its adapters teacher-forced; this asks whether the change shows
where a developer sees it. For each adapter it saved (``WORK_DIR/adapters/<crowd>-<seed>-
<method>-<arm>``) and for the base model, greedy completions (48 tokens, post-processed as
crlhf-lsp serves them: ended where the block ends or a line repeats the one before) of
held-out prompts: standard-library functions from modules never rated, cut just before
their first rule-breaking construct, so the base model breaks a rule on many of them.

Per arm, over the chosen seeds:

- **violation rate**: the share of judged completion lines that break a convention, base and
  after, with the relative cut ``1 − after/base``; and the per-prompt change (share of
  breaking lines, after − base) with its 90 % interval over prompts and seeds;
- **parse rate** and **repetition** (the guards: learning to avoid a line can mean learning
  to degenerate), base and after, and their paired per-prompt changes with 90 % intervals
  over prompts and seeds (at 60 prompts one completion is 1.7 points: an arm can move a
  guard by more than 2 points by chance, as random credit does);
- against random credit (the same label budget, no information), paired per prompt and
  seed: the change in breaking share and in ``heldout/sound``, since an update that knocks
  the base out of a loop cuts rule-breaking with no information at all; and the lines
  breaking each rule;
- per seed, the demo gate's decision on ``heldout/sound`` alone (parses and repeats no
  line, paired per prompt, 5 points of margin): how often the guard that judges served
  text would let the arm's adapter through.

The issue's target: the violation rate cut by ≥ 50 % with parse rate and repetition within
2 points of base, on enough prompts that the base breaks a rule ≥ 30 times (printed).
Writes ``generation.json`` in WORK_DIR.

Where the bench's model has a GGUF and llama-cpp-python is installed, llama.cpp writes the
completions (each adapter as a GGUF LoRA, :mod:`crlhf_cli.llamacpp_texts`): transformers
wrote about 10 tokens/s here, so 7 models × 60 prompts did not end in 36 min.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from crlhf_cli import conventions as conv  # noqa: E402
from crlhf_cli.demo_learning import (  # noqa: E402
    GUARD,
    generate,
    guard_flags,
    guard_scores,
    heldout_prompts,
    served_adapter_texts,
    sound,
)
from crlhf_cli.learning_stats import Interval, mean_interval  # noqa: E402


def breaking_share(function: conv.Function, text: str) -> float:
    """The share of a completion's judged lines that break a convention (0 with none)."""
    judged = [t for t in conv.line_truth(text, function.head) if t is not None]
    return sum(t < 0 for t in judged) / len(judged) if judged else 0.0


def guard_changes(
    functions: list[conv.Function], by_seed: dict[int, list[str]], base: dict[str, list[float]]
) -> dict[str, Interval]:
    """Per guard (parses, repeats): after − base per prompt, over seeds, with its interval."""
    after = {s: guard_flags(functions, texts) for s, texts in by_seed.items()}
    return {
        key: mean_interval(
            [[a - b for a, b in zip(after[s][key], base[key], strict=True)] for s in sorted(after)]
        )
        for key in ("parses", "repeats")
    }


def sound_gate(
    after: dict[int, dict[str, list[float]]], base: dict[str, list[float]]
) -> dict[int, str]:
    """Per seed, the demo gate's decision on ``heldout/sound`` alone, from the per-prompt
    guard flags (:func:`guard_flags`) after and before: a completion that parses and
    repeats no line, paired per prompt, 5 points of margin. How often the guard that now
    judges served text would let the arm's adapter through."""
    from crlhf_trainer.gate import gate

    return {s: gate({GUARD: sound(f)}, {GUARD: sound(base)}).decision for s, f in after.items()}


def versus(
    functions: list[conv.Function],
    texts: dict[str, dict[int, list[str]]],
    other: str = "random",
) -> dict[str, dict[str, Interval]]:
    """Each arm against ``other`` (random credit: the same label budget, no information),
    paired per prompt on the seeds both ran: the change in the share of breaking lines
    and in ``heldout/sound``, with 90 % intervals over prompts and seeds. Against the base
    an arm's cut can come from any update (one that knocks the base out of a loop of
    ``print`` lines cuts rule-breaking with no information at all); against random credit
    it is what the labels bought."""
    scores = {
        "breaking": lambda t: [breaking_share(f, x) for f, x in zip(functions, t, strict=True)],
        "sound": lambda t: sound(guard_flags(functions, t)),
    }
    out = {}
    for arm, by_seed in texts.items():
        seeds = sorted(set(by_seed) & set(texts.get(other, {})))
        if arm == other or not seeds:
            continue
        out[arm] = {
            name: mean_interval(
                [
                    [x - y for x, y in zip(score(by_seed[s]), score(texts[other][s]), strict=True)]
                    for s in seeds
                ]
            )
            for name, score in scores.items()
        }
    return out


def broken_rules(functions: list[conv.Function], texts: Sequence[str]) -> Counter[str]:
    """How many completion lines break each rule (a line can break two)."""
    return Counter(
        rule
        for f, x in zip(functions, texts, strict=True)
        for line in conv.judged_lines(x, f.head)
        for rule in conv.breaks(line)
    )


def _rules(counts: Counter[str]) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in counts.most_common()) or "none"


def _versus_table(vs: dict[str, dict[str, Interval]]) -> Table:
    table = Table(title="against random credit, paired per prompt and seed, 90% CI")
    for col in ("arm", "Δ breaking share / prompt", "Δ heldout/sound"):
        table.add_column(col)
    for arm, ivs in vs.items():
        table.add_row(arm, str(ivs["breaking"]), str(ivs["sound"]))
    return table


def _gguf(ref, engine: str) -> Path | None:  # type: ignore[no-untyped-def]
    import importlib.util

    if engine == "transformers" or ref.gguf is None:
        if engine == "llamacpp":
            raise SystemExit(f"--engine llamacpp: {ref.model_id} has no GGUF")
        return None
    if importlib.util.find_spec("llama_cpp") is None:
        if engine == "llamacpp":
            raise SystemExit("--engine llamacpp needs llama-cpp-python: pip install 'crlhf[lsp]'")
        return None
    return Path(ref.gguf)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("work_dir", type=Path, help="bench/learning.py's --work-dir")
    p.add_argument(
        "--prompts",
        type=int,
        default=120,
        help="held-out prompts (default 120: on the suggestions crlhf-lsp shows, Gemma 3 "
        "270M breaks a rule on 17 lines of 60 prompts, 30 of 120; the issue asks ≥ 30)",
    )
    p.add_argument("--seeds", default="0,1,2", help="seeds whose adapters to score")
    p.add_argument("--crowd", default="default", help="the crowd whose adapters to score")
    p.add_argument("--method", default="pg-line")
    p.add_argument("--arms", default="truth,em2,mv,random")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument(
        "--engine",
        choices=["auto", "llamacpp", "transformers"],
        default="auto",
        help="what writes the completions (auto: llama.cpp where the model has a GGUF)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from crlhf_models import resolve_model
    from crlhf_trainer.train import TrainConfig, load_policy
    from transformers import AutoModelForCausalLM, AutoTokenizer

    args = parse_args(argv)
    config = json.loads((args.work_dir / "learning.json").read_text())["config"]
    ref = resolve_model(config.get("model"))
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    functions = heldout_prompts(args.prompts)
    prompts = [f.prompt for f in functions]
    seeds = [int(s) for s in args.seeds.split(",")]
    console = Console()

    gguf = _gguf(ref, args.engine)

    def run(adapter: Path | None) -> list[str]:
        if gguf is not None:
            return served_adapter_texts(gguf, adapter, prompts, args.max_new_tokens)
        if adapter is None:
            model = AutoModelForCausalLM.from_pretrained(ref.path)
        else:
            model = load_policy(str(ref.path), TrainConfig(), adapter=adapter, trainable=False)
        return generate(model, tokenizer, prompts, args.max_new_tokens)

    base = run(None)
    base_share = [breaking_share(f, x) for f, x in zip(functions, base, strict=True)]
    base_flags = guard_flags(functions, base)
    out: dict = {
        "prompts": len(prompts),
        "base": guard_scores(functions, base),
        "arms": {},
        "texts": {"base": base},
    }
    out["base"]["breaking_lines"] = sum(
        t < 0
        for f, x in zip(functions, base, strict=True)
        for t in conv.line_truth(x, f.head)
        if t is not None
    )
    jobs = [(arm, s) for arm in args.arms.split(",") for s in seeds]
    texts: dict[str, dict[int, list[str]]] = {}
    for arm, seed in tqdm(jobs, desc="adapters", unit="adapter"):
        crowd = config["crowds"][0] if arm == "truth" else args.crowd
        adapter = args.work_dir / "adapters" / f"{crowd}-{seed}-{args.method}-{arm}"
        if not (adapter / "adapter_model.safetensors").exists():
            console.print(f"[yellow]no adapter {adapter.name}: skipped[/]")
            continue
        texts.setdefault(arm, {})[seed] = run(adapter)
    table = Table(title=f"greedy completions of {len(prompts)} held-out prompts ({args.crowd})")
    for col in (
        "arm",
        "violation rate",
        "cut",
        "Δ breaking share / prompt",
        "parses",
        "repeats",
        "lines breaking each rule",
    ):
        table.add_column(col)
    guard_table = Table(title="the guards' change against the base, paired per prompt, 90% CI")
    for col in ("arm", "Δ parses", "Δ repeats", "gate on heldout/sound (per seed)"):
        guard_table.add_column(col)
    b = out["base"]
    table.add_row(
        "base",
        f"{b['violation_rate']:.1%}",
        "",
        "",
        f"{b['parse_rate']:.1%}",
        f"{b['repetition']:.1%}",
        _rules(broken_rules(functions, base)),
    )
    for arm, by_seed in texts.items():
        scores = [guard_scores(functions, by_seed[s]) for s in sorted(by_seed)]
        mean = {k: sum(sc[k] for sc in scores) / len(scores) for k in scores[0]}
        diffs = [
            [
                breaking_share(f, x) - b0
                for f, x, b0 in zip(functions, by_seed[s], base_share, strict=True)
            ]
            for s in sorted(by_seed)
        ]
        delta = mean_interval(diffs)
        guards = guard_changes(functions, by_seed, base_flags)
        flags = {s: guard_flags(functions, by_seed[s]) for s in sorted(by_seed)}
        decisions = sound_gate(flags, base_flags)
        verdicts = Counter(decisions.values())
        out["texts"][arm] = {str(s): by_seed[s] for s in sorted(by_seed)}
        cut = 1 - mean["violation_rate"] / b["violation_rate"] if b["violation_rate"] else 0.0
        out["arms"][arm] = {
            "seeds": sorted(by_seed),
            **mean,
            "cut": cut,
            "delta": delta.mean,
            "delta_low": delta.low,
            "delta_high": delta.high,
            "sound_gate": {str(k): v for k, v in decisions.items()},
            **{
                f"{key}_{part}": getattr(iv, attr)
                for key, iv in guards.items()
                for part, attr in (("delta", "mean"), ("low", "low"), ("high", "high"))
            },
        }
        guard_table.add_row(
            f"{arm}",
            str(guards["parses"]),
            str(guards["repeats"]),
            " · ".join(f"{n} {d}" for d, n in sorted(verdicts.items())),
        )
        table.add_row(
            f"{arm} ({len(by_seed)} seeds)",
            f"{mean['violation_rate']:.1%}",
            f"{cut:+.0%}",
            str(delta),
            f"{mean['parse_rate']:.1%}",
            f"{mean['repetition']:.1%}",
            _rules(sum((broken_rules(functions, by_seed[s]) for s in sorted(by_seed)), Counter())),
        )
    console.print(table)
    console.print(guard_table)
    vs = versus(functions, texts)
    for arm, ivs in vs.items():
        out["arms"][arm]["versus_random"] = {
            k: {"delta": iv.mean, "low": iv.low, "high": iv.high} for k, iv in ivs.items()
        }
    if vs:
        console.print(_versus_table(vs))
    console.print(f"the base broke a rule on {b['breaking_lines']} lines (the issue asks ≥ 30)")
    (args.work_dir / "generation.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
