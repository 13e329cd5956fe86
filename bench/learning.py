"""Does crowd-sourced RLHF make the default model better? Arms at equal label budget.

    .venv/bin/python bench/learning.py --merge OUT_DIR A/learning.json B/learning.json …

    .venv/bin/python bench/learning.py [--seeds 3] [--crowds default,hostile] [--steps 8]
        [--methods pg-line,pg,kto] [--prompts 48] [--heldout 60] [--model gemma3-270m]
        [--scenario conventions|execution] [--importance policy|start]
        [--methods kto --corrections 0.5]

Everything goes through the real parts (:mod:`crlhf_cli.learning`): completions from
crlhf-lsp, ratings from simulated crowds posted to real stores through review tasks, the
trainer's pull → aggregate → train, then an evaluation on held-out work
(:mod:`crlhf_cli.learning_scenarios`): scenario ``conventions`` scores held-out standard
library functions teacher-forced (:mod:`crlhf_cli.conventions`); scenario ``execution``
completes MBPP training problems several times at T > 0, judges each line by running it
in the jail (:mod:`crlhf_cli.execution`), and scores pass@1 on MBPP's test split.

``--corrections SHARE`` (conventions, kto): the developer who accepted the completions
also rewrites that share of the rule-breaking lines the rules know how to fix
(:mod:`crlhf_cli.conventions_fix`); the rewrites reach the store as crlhf-lsp's retention
corrections and every arm's KTO trains them as pairs beside its ratings, as the nightly
trainer does (``crlhf-train --method kto``).

The guard column is the pair preference (a) on the same held-out functions: the change in
q = log p(a correct line) − log p(its mutated twin), nats/token; below zero, the adapter
learnt to prefer broken code.

Prints, per crowd and method, each arm's improvement d (conventions: nats/token, positive
when rule-breaking lines became less likely than conforming ones on code never rated;
execution: pass@1 after − before) with its 90 % interval over items and seeds, how often
the trainer's gate would publish the arm's adapters, its recovery
R = (arm − random) / (truth − random), em2 − random and em2 − majority vote; then the
line accuracy of each aggregation beside its constant baseline, balanced accuracy, AUC
and Brier score. Writes ``learning.json`` and ``learning.png`` in the work dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from crlhf_cli.learning import run_learning  # noqa: E402
from crlhf_cli.learning_config import (  # noqa: E402
    ARMS,
    CORRECTIONS_ARM,
    CROWDS,
    IMPORTANCE,
    SCENARIOS,
    LearningConfig,
)
from crlhf_cli.learning_result import LearningResult  # noqa: E402
from crlhf_cli.learning_stats import mean_interval, paired_difference, recovery  # noqa: E402

_HELP = {
    "prompts": "training-side prompts completed by crlhf-lsp",
    "heldout": "held-out reference functions scored teacher-forced",
    "honeypots": "honeypot lines of known truth in each store",
    "annotators": "simulated annotators per crowd",
    "redundancy": "crowd ratings per completion: the label budget every arm shares",
    "max_honeypots": "honeypots one annotator answers at most",
    "max_tokens": "completion tokens (crlhf-lsp's maxTokens)",
    "seeds": "seeds per arm; each redraws the crowd and the training",
    "first_seed": "the first seed (a later run adds seeds: merge the runs with --merge)",
    "steps": "optimizer steps per training",
    "batch_size": "examples per step",
    "grad_accum": "micro-batches per step",
    "lr": "learning rate of the LoRA adapter",
    "kl_coef": "weight of the KL term to the base model",
    "kl_stop": "past this KL to base (nats/token) the update is undone and the step halved",
    "kl_backtracks": "halvings of the step before training stops (0: stop at the KL limit)",
    "max_train_tokens": "prompt + completion tokens kept for training",
    "max_eval_tokens": "tokens of each held-out function scored",
    "samples": "completions per training prompt, each its own seed (0: conventions 1, execution 4)",
    "temperature": "of the training completions (below 0: conventions 0, execution 0.8)",
    "eval_samples": "execution: samples per held-out MBPP problem (n of pass@1)",
    "eval_temperature": "execution: temperature of the held-out samples",
    "eval_max_tokens": "execution: most tokens per held-out sample",
    "negative_weight": "multiplies advantages below 0 (0: learn from lines credited above the "
    "baseline only)",
    "corrections": "conventions, kto: share of the fixable rule-breaking lines the developer "
    "rewrites, sent as retention corrections and trained as KTO pairs beside every arm's "
    "ratings",
}


def parse_args(argv: list[str] | None = None) -> LearningConfig:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--work-dir", type=Path, default=Path("crlhf-learning"), help="results here")
    p.add_argument("--model", help="crlhf_models spec (default: $CRLHF_MODEL or gemma3-270m)")
    p.add_argument(
        "--backend",
        choices=["auto", "local", "llamacpp"],
        default="auto",
        help="crlhf-lsp's backend for the completions",
    )
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="conventions",
        help="conventions: teacher-forced on held-out stdlib code; execution: MBPP, pass@1",
    )
    p.add_argument(
        "--importance",
        choices=IMPORTANCE,
        default="policy",
        help="the PPO ratio's old policy: policy (the current one: r = 1, the clip never "
        "binds) or start (the policy training starts from: the clip bounds each token's move)",
    )
    p.add_argument("--crowds", default="default,hostile", help=f"of {', '.join(CROWDS)}")
    p.add_argument(
        "--arms",
        default=",".join(ARMS),
        help=f"of {', '.join(ARMS)}; and {CORRECTIONS_ARM} (KTO on the --corrections pairs "
        "alone, no credit from the ratings)",
    )
    p.add_argument(
        "--methods",
        default="pg-line",
        help="of pg-line, pg, kto (comma-separated; kto: TRL's KTOTrainer on rated lines)",
    )
    for f in fields(LearningConfig):
        if f.type in ("int", "float") and f.name not in ("seed",):
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                type={"int": int, "float": float}[f.type],
                default=f.default,
                help=f"{_HELP.get(f.name, '')} (default {f.default})".strip(),
            )
    args = p.parse_args(argv)
    values = vars(args)
    for key in ("crowds", "arms", "methods"):
        values[key] = tuple(x.strip() for x in values[key].split(",") if x.strip())
    return LearningConfig(**values)


def _merge_args(argv: list[str] | None) -> list[Path] | None:
    """``--merge OUT A.json B.json …``: [OUT, A, B, …], or None without --merge."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--merge" not in args:
        return None
    paths = [Path(a) for a in args[args.index("--merge") + 1 :]]
    if len(paths) < 3:
        raise SystemExit("--merge OUT_DIR A/learning.json B/learning.json [...]")
    return paths


def print_tables(result: LearningResult, console: Console) -> None:
    cfg = result.config
    for crowd in cfg["crowds"]:
        for method in cfg["methods"]:
            what = "d = −Δ margin" if result.unit == "nats/token" else "d = Δ pass@1"
            table = Table(title=f"crowd {crowd} · {method} · improvement d ({result.unit}), 90% CI")
            for col in (
                "arm",
                what,
                "recovery R",
                "guard Δq (a)",
                "gate publishes",
                "seeds × items",
            ):
                table.add_column(col)
            for arm in cfg["arms"]:
                runs = result.table(crowd, method, arm)
                if not runs:
                    continue
                r = None
                if arm not in ("truth", "random", CORRECTIONS_ARM):  # R: of rating credit
                    runs_p, rnd, truth = result.paired(crowd, method, arm, "random", "truth")
                    r = recovery(runs_p, rnd, truth) if runs_p else None
                table.add_row(
                    arm,
                    str(mean_interval(runs)),
                    "–" if r is None else f"{r} ({len(runs_p)} seeds)",
                    _guard(result.table(crowd, method, arm, metric="pair")),
                    _gate(result, crowd, method, arm),
                    f"{len(runs)} × {len(runs[0])}",
                )
            console.print(table)
            for other in ("random", "mv"):
                em2, b = result.paired(crowd, method, "em2", other)
                if em2:
                    name = {"mv": "majority vote"}.get(other, other)
                    diff = paired_difference(em2, b)
                    console.print(f"  em2 − {name}: {diff} ({len(em2)} seeds)")
    acc = Table(title="line accuracy against the truth (per crowd, seed 0 … n)")
    for col in ("crowd/seed", "em2", "majority vote", "single label"):
        acc.add_column(col)
    for key, row in result.accuracy.items():
        cells = [_scores(row.get(a)) for a in ("em2", "mv", "single")]
        acc.add_row(key, *cells)
    console.print(acc)
    console.print(
        f"{result.completions} completions, {result.lines} rated lines "
        f"({result.share_breaking:.0%} wrong); wall {result.seconds / 60:.1f} min"
    )


def _guard(pairs: list[list[float]]) -> str:
    """The pair guard's change with its interval, over the items that have a pair."""
    return str(mean_interval(pairs)) if pairs and pairs[0] else "–"


def _gate(result: LearningResult, crowd: str, method: str, arm: str) -> str:
    """How many of the arm's adapters the trainer's gate would publish, of how many."""
    runs = [
        r
        for r in result.runs
        if r.method == method and r.arm == arm and (arm == "truth" or r.crowd == crowd) and r.gate
    ]
    if not runs:
        return "–"
    return f"{sum(r.gate.get('decision') == 'publish' for r in runs)} of {len(runs)}"


def _scores(s: dict | None) -> str:
    if not s:
        return "–"
    return (
        f"{s['accuracy']:.0%} (const {s['constant']:.0%}) bal {s['balanced']:.0%} "
        f"AUC {s['auc']:.2f} Brier {s['brier']:.2f}"
    )


def plot(result: LearningResult, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cfg = result.config
    fig, axes = plt.subplots(1, len(cfg["crowds"]), figsize=(5 * len(cfg["crowds"]), 3.5))
    axes = axes if len(cfg["crowds"]) > 1 else [axes]
    for ax, crowd in zip(axes, cfg["crowds"], strict=True):
        method = cfg["methods"][0]
        arms = [a for a in cfg["arms"] if result.table(crowd, method, a)]
        ivs = [mean_interval(result.table(crowd, method, a)) for a in arms]
        ax.errorbar(
            range(len(arms)),
            [iv.mean for iv in ivs],
            yerr=[[iv.mean - iv.low for iv in ivs], [iv.high - iv.mean for iv in ivs]],
            fmt="o",
            capsize=4,
        )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_title(f"{crowd} crowd ({method})")
        ax.set_ylabel(f"held-out improvement d ({result.unit})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    merge = _merge_args(argv)
    console = Console()
    if merge:  # tables of earlier runs together: no model is loaded
        out, *paths = merge
        result = LearningResult.load(paths[0])
        for path in paths[1:]:
            result = result.merge(LearningResult.load(path))
        out.mkdir(parents=True, exist_ok=True)
        (out / "learning.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
        print_tables(result, console)
        png = plot(result, out / "learning.png")
        console.print(f"merged: {out / 'learning.json'}" + (f", plot: {png}" if png else ""))
        return 0
    cfg = parse_args(argv)
    result = run_learning(cfg, log=console.print)
    print_tables(result, console)
    png = plot(result, cfg.work_dir / "learning.png")
    console.print(f"results: {cfg.work_dir / 'learning.json'}" + (f", plot: {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
