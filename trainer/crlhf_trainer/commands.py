"""The nightly subcommands of ``crlhf-train``: pull, train, eval, publish, run.

Each is ``add_<name>_arguments(parser)`` plus ``run_<name>(args) -> exit code``,
registered in :data:`crlhf_trainer.cli.COMMANDS`. torch and transformers are imported
inside the runners so ``crlhf-train --help`` stays fast.

    CRLHF_TOKEN=… crlhf-train run --store-url URL --model MODEL [--work-dir DIR]
        [--token-file FILE] [--method pg|pg-line|grpo|kto] [--max-steps N]
        [--eval humaneval,mbpp|none] [--eval-limit N] [--unsafe-eval]
        [--publish/--no-publish] [--device auto|cpu|cuda]

The token comes from ``CRLHF_TOKEN`` or ``--token-file``, never from the command line:
every user of the machine can read a process's arguments (``ps``, ``/proc/PID/cmdline``),
and so could the generated programs the evaluation runs.

Exit status: 0 done (a refused gate included: the adapter stays a candidate), 2 an error
from :class:`~crlhf_trainer.errors.CrlhfTrainError` (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .progress import bars, print_summary

__all__ = [
    "add_eval_arguments",
    "add_publish_arguments",
    "add_pull_arguments",
    "add_run_arguments",
    "add_train_arguments",
    "run_eval",
    "run_publish",
    "run_pull",
    "run_run",
    "run_train",
]


# --- arguments ----------------------------------------------------------------------


def _store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store-url",
        default=os.environ.get("CRLHF_STORE_URL"),
        required=False,
        help="the store, e.g. https://crlhf.example.com (env CRLHF_STORE_URL)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="a file holding a trainer-scope token (default: env CRLHF_TOKEN)",
    )
    p.add_argument("--token", action=_RefuseToken, help=argparse.SUPPRESS)


class _RefuseToken(argparse.Action):
    """``--token VALUE`` would show the token to every user of the machine."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(
            "--token VALUE puts the token where every user of this machine can read it "
            "(ps, /proc/PID/cmdline); set CRLHF_TOKEN or pass --token-file FILE instead"
        )


def _work(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path("crlhf-work"),
        help="pulled data, cursor and runs (default ./crlhf-work)",
    )


def _model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base model: hub id or local folder")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        choices=["pg", "pg-line", "grpo", "kto"],
        default="pg",
        help="pg: per-completion reward; pg-line: per-line credit; grpo: TRL GRPO; "
        "kto: TRL KTO, one 👍/👎 example per rated line",
    )
    p.add_argument("--aggregation", choices=["em2", "paper", "paper-l1", "mv"], default="em2")
    p.add_argument(
        "--no-implicit-labels",
        dest="implicit_labels",
        action="store_false",
        help="aggregate the 👍/👎 ratings only, without the developers' retention verdicts "
        "(implicit:<name> pseudo-annotators)",
    )
    p.add_argument(
        "--corrections",
        choices=["off", "kto"],
        default="kto",
        help="kto (default): with --method kto, each line a developer rewrote is a pair of "
        "rows, the replacement desirable and the original undesirable; off: never",
    )
    p.add_argument("--max-steps", type=int, default=50, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument(
        "--importance",
        choices=["policy", "logged", "start"],
        default="policy",
        help="policy (default): the update is reward-weighted with a proximal KL term; "
        "logged: a PPO ratio against crlhf-lsp's logged log-probs, only meaningful for "
        "completions sampled at T > 0 by the same (unquantised) model; start: a PPO ratio "
        "against the policy the run starts from, so the clip (ε 0.2) bounds how far one night "
        "moves any logged token's probability",
    )
    p.add_argument(
        "--negative-weight",
        type=float,
        default=1.0,
        help="multiplies advantages below zero, 0 … 1 (1, the default: as they are; 0: learn "
        "only from lines rated above the baseline; see docs/benchmarks.md)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="N",
        help="save the training loop's whole state every N steps (next to the adapter)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest run from its checkpoint, exactly where it stopped",
    )
    p.add_argument(
        "--no-continue",
        dest="continue_from_latest",
        action="store_false",
        help="start a fresh adapter instead of continuing the published one",
    )


def _eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eval",
        default="humaneval,mbpp",
        help="benchmarks, comma-separated, or none (default humaneval,mbpp)",
    )
    p.add_argument(
        "--eval-limit", type=int, default=20, help="first N problems of each benchmark (0: all)"
    )
    p.add_argument("--eval-samples", type=int, default=1, help="samples per problem (n)")
    p.add_argument(
        "--eval-ks",
        default="1",
        help="k of pass@k, comma-separated (e.g. 1,10,100; each ≤ --eval-samples, and "
        "several samples need --temperature > 0); generated n at a time per problem",
    )
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--unsafe-eval",
        action="store_true",
        help="where bubblewrap cannot jail the generated programs, run them anyway, as this "
        "user: they can read and delete your files (default: refuse)",
    )


def _publish_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--margin-scale",
        type=float,
        default=1.0,
        help="multiplies the gate's margins (2 points of pass@k; a tenth of an item's sd "
        "for the held-out log-prob margin): the largest loss the 90%% interval may allow",
    )
    p.add_argument(
        "--min-items",
        type=int,
        default=20,
        help="paired items a gated metric needs before the gate trusts it (default 20)",
    )
    p.add_argument(
        "--publish-without-evidence",
        action="store_true",
        help="publish when the evaluation is too thin to tell (never when it shows harm)",
    )
    p.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="upload and publish (--no-publish: evaluate and report only)",
    )


def add_pull_arguments(p: argparse.ArgumentParser) -> None:
    _store(p)
    _work(p)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    _store(p)
    _work(p)
    _model(p)
    _train_options(p)


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    _work(p)
    _model(p)
    _eval_options(p)
    p.add_argument("--run-dir", type=Path, help="run folder (default: the latest in the work dir)")


def add_publish_arguments(p: argparse.ArgumentParser) -> None:
    _store(p)
    _work(p)
    p.add_argument("--model", required=True, help="base model recorded with the adapter")
    _publish_options(p)
    p.add_argument("--run-dir", type=Path, help="run folder (default: the latest in the work dir)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    _store(p)
    _work(p)
    _model(p)
    _train_options(p)
    _eval_options(p)
    _publish_options(p)


# --- config from arguments ----------------------------------------------------------


def config_from_args(args: argparse.Namespace):  # -> NightlyConfig
    from .errors import TrainConfigError
    from .evaluate import EvalConfig
    from .gate import GateConfig
    from .nightly import NightlyConfig
    from .train import TrainConfig

    if getattr(args, "store_url", None) is None and args.command != "eval":
        raise TrainConfigError("no store: pass --store-url URL (or set CRLHF_STORE_URL)")
    train = TrainConfig(
        method=getattr(args, "method", "pg") if getattr(args, "method", "pg") != "grpo" else "pg",
        max_steps=getattr(args, "max_steps", 50),
        batch_size=getattr(args, "batch_size", 4),
        grad_accum=getattr(args, "grad_accum", 4),
        lr=getattr(args, "lr", 2e-4),
        kl_coef=getattr(args, "kl_coef", 0.05),
        importance=getattr(args, "importance", "policy"),
        negative_weight=getattr(args, "negative_weight", 1.0),
        seed=getattr(args, "seed", 0),
        checkpoint_every=getattr(args, "checkpoint_every", 0),
        resume=getattr(args, "resume", False),
        device=getattr(args, "device", "auto"),
    )
    benchmarks = getattr(args, "eval", "none")
    names = () if benchmarks in ("none", "") else tuple(b.strip() for b in benchmarks.split(","))
    ev = EvalConfig(
        benchmarks=names,
        limit=getattr(args, "eval_limit", 20) or None,
        samples=getattr(args, "eval_samples", 1),
        ks=_ks(getattr(args, "eval_ks", "1")),
        temperature=getattr(args, "temperature", 0.0),
        max_new_tokens=getattr(args, "max_new_tokens", 256),
        unsafe=getattr(args, "unsafe_eval", False),
    )
    if names and args.command in ("eval", "run"):
        _check_jail(ev.unsafe)  # before hours of training, not after
    return NightlyConfig(
        store_url=getattr(args, "store_url", None) or "",
        token=_token(args),
        model=_model_id(args.model) if getattr(args, "model", None) else "",
        work_dir=args.work_dir,
        aggregation=getattr(args, "aggregation", "em2"),
        implicit_labels=getattr(args, "implicit_labels", True),
        corrections=getattr(args, "corrections", "kto"),
        method=getattr(args, "method", "pg"),
        train=train,
        eval=ev.validate(),
        gate=GateConfig(
            min_items=getattr(args, "min_items", 20),
            margin_scale=getattr(args, "margin_scale", 1.0),
            publish_without_evidence=getattr(args, "publish_without_evidence", False),
        ).validate(),
        publish=getattr(args, "publish", True),
        continue_from_latest=getattr(args, "continue_from_latest", True),
    )


def _token(args: argparse.Namespace) -> str | None:
    from .errors import TrainConfigError

    path = getattr(args, "token_file", None)
    if path is None:
        return os.environ.get("CRLHF_TOKEN") or None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TrainConfigError(f"--token-file {path}: cannot read it ({exc.strerror})") from None
    if not token:
        raise TrainConfigError(f"--token-file {path} is empty; write the trainer's token in it")
    return token


def _check_jail(unsafe: bool) -> None:
    from .sandbox import check_jail

    problem = check_jail(unsafe=unsafe)  # raises, naming the fix, unless unsafe
    if problem is not None:
        print(
            "crlhf-train: WARNING: --unsafe-eval: generated programs run UNJAILED, as "
            f"this user ({problem}). They can read, change and delete your files (the "
            "store token included) and reach the network. Install bubblewrap "
            "(`make setup-system`) to jail them.",
            file=sys.stderr,
        )


def _ks(text: str) -> tuple[int, ...]:
    from .errors import TrainConfigError

    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise TrainConfigError(f"--eval-ks {text!r}: write whole numbers, e.g. 1,10") from None
    if not ks or min(ks) < 1:
        raise TrainConfigError(f"--eval-ks {text!r}: each k must be ≥ 1")
    return ks


def _model_id(model: str) -> str:
    """A local folder becomes an absolute path (what adapters record); a hub id stays."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


# --- runners ------------------------------------------------------------------------


def run_pull(args: argparse.Namespace) -> int:
    from .nightly import pull_work

    cfg = config_from_args(args)
    with bars() as progress:
        stats = pull_work(cfg, progress)
    print_summary({"pull": stats})
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .nightly import aggregate_work, train_run

    cfg = config_from_args(args)
    agg, rewards = aggregate_work(cfg)
    with bars() as progress:
        run, summary = train_run(cfg, rewards, progress)
    print_summary({"aggregate": agg, "train": summary, "run": str(run)})
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .nightly import evaluate_run
    from .pull import WorkDir
    from .runs import latest_run

    cfg = config_from_args(args)
    run = args.run_dir or latest_run(WorkDir(cfg.work_dir))
    with bars() as progress:
        metrics = evaluate_run(cfg, run, progress)
    print_summary({"eval": metrics, "run": str(run)})
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from .nightly import publish_run
    from .pull import WorkDir
    from .runs import latest_run

    cfg = config_from_args(args)
    run = args.run_dir or latest_run(WorkDir(cfg.work_dir))
    print_summary({"publish": publish_run(cfg, run), "run": str(run)})
    return 0


def run_run(args: argparse.Namespace) -> int:
    from .nightly import run_nightly

    cfg = config_from_args(args)
    with bars() as progress:
        summary = run_nightly(cfg, progress)
    print_summary(summary)
    published = summary["publish"].get("status") == "published"
    print(summary["publish"].get("version", "-") if published else "not published", file=sys.stdout)
    return 0
