"""``crlhf-train``: the nightly trainer's command line.

One small function per subcommand, registered in :data:`COMMANDS` as
``name -> (help, add_arguments, run)``; ``run(args) -> exit code``.  Errors from the
:class:`~crlhf_trainer.errors.CrlhfTrainError` hierarchy become one line on stderr and
exit status 2.  Heavy imports (numpy, torch, pydantic) happen inside the subcommands, and
only the chosen subcommand's arguments are declared (:func:`build_parser`), so that
``crlhf-train --help`` and ``crlhf-train aggregate`` start fast: ``aggregate`` imports
numpy and pyarrow, never pydantic, scipy or torch (about 0.15 s and 20 MB of a 1M-label run
went to pydantic alone, through ``export-dataset``'s arguments).

    crlhf-train aggregate --labels LABELS.csv [--gold GOLD.csv]
        [--method em2|paper|paper-l1|mv] --out POSTERIORS.csv
        [--annotators-out ANNOTATORS.csv]
    crlhf-train keygen --out DIR
        an Ed25519 key pair to sign published adapters: DIR/crlhf-signing.key (0600, for
        ``publish``/``run --signing-key`` or ``$CRLHF_SIGNING_KEY``) and crlhf-signing.pub
        (its line is the editors' ``adapterPublicKey``)
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import commands as C
from .errors import AggregationError, CrlhfTrainError

__all__ = ["COMMANDS", "build_parser", "main"]

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

METHODS = ("em2", "paper", "paper-l1", "mv")


def _lazy(module: str, name: str) -> Callable:
    """``module.name``, imported when first called (the module's imports are heavy)."""

    def call(arg):
        return getattr(importlib.import_module(module, __package__), name)(arg)

    call.__name__ = call.__qualname__ = name
    return call


# ---------------------------------------------------------------- aggregate
def add_aggregate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--labels",
        required=True,
        metavar="LABELS.csv",
        help="header item,annotator,label; label 1 = correct, 0 or -1 = wrong",
    )
    p.add_argument(
        "--gold",
        metavar="GOLD.csv",
        help="header item,label: the honeypot items' truth, same coding",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default="em2",
        help="estimator (default: em2, two-coin Dawid-Skene EM)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="POSTERIORS.csv",
        help="written with header item,p_correct, one row per item of LABELS.csv",
    )
    p.add_argument(
        "--annotators-out",
        metavar="ANNOTATORS.csv",
        help="written with header annotator,reliability,low,high,spammer_score,flag",
    )


def run_aggregate(args: argparse.Namespace) -> int:
    from .aggregation import aggregate
    from .aggregation.labels import LabelSet
    from .aggregation.result_csv import write_posteriors

    labels = LabelSet.from_csv(args.labels, args.gold)
    result = aggregate(labels, args.method)
    with _open_out(args.out, binary=True) as f:
        write_posteriors(f, result.items, result.p_correct)
    if args.annotators_out:
        with _open_out(args.annotators_out) as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["annotator", "reliability", "low", "high", "spammer_score", "flag"])
            for r in result.annotators:
                w.writerow(
                    [
                        r.annotator,
                        f"{r.reliability:.6f}",
                        f"{r.low:.6f}",
                        f"{r.high:.6f}",
                        f"{r.spammer_score:.6f}",
                        r.flag,
                    ]
                )
    flagged = sum(r.flag != "ok" for r in result.annotators)
    print(
        f"{args.method}: {labels.n_labels} labels, {labels.n_items} items, "
        f"{labels.n_annotators} annotators ({flagged} flagged) -> {args.out}",
        file=sys.stderr,
    )
    return 0


def _open_out(path: str, binary: bool = False):
    try:
        if binary:
            return open(path, "wb")
        return open(path, "w", newline="", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror}") from None


class OutputError(CrlhfTrainError):
    """An output file that cannot be written."""


# ---------------------------------------------------------------- keygen
def add_keygen_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the two key files")


def run_keygen(args: argparse.Namespace) -> int:
    from crlhf_contract.signing import SigningError, generate_keypair

    try:
        private, public = generate_keypair(Path(args.out))
    except (SigningError, OSError) as exc:
        raise OutputError(str(exc)) from None
    print(
        f"private key: {private} (keep it with the trainer: --signing-key {private})\n"
        f"public key:  {public} (set the editors' crlhf adapterPublicKey to its line: "
        f"{public.read_text().strip()})"
    )
    return 0


SIGNED = ("publish", "run")
"""Subcommands that upload an adapter, and so take ``--signing-key``."""


# ---------------------------------------------------------------- the table
COMMANDS: dict[str, Command] = {
    "aggregate": (
        "reliabilities and P(line correct) from per-line labels (CSV in, CSV out)",
        add_aggregate_arguments,
        run_aggregate,
    ),
    # The nightly stages live in commands.py (torch is imported only when they run).
    "pull": ("pull new ratings and completions from the store", C.add_pull_arguments, C.run_pull),
    "train": ("aggregate, then train a LoRA adapter", C.add_train_arguments, C.run_train),
    "eval": ("pass@k and held-out reward: candidate vs baseline", C.add_eval_arguments, C.run_eval),
    "publish": ("gate, upload, publish if no regression", C.add_publish_arguments, C.run_publish),
    "run": ("the whole nightly job: pull → publish", C.add_run_arguments, C.run_run),
    "keygen": ("a key pair to sign published adapters", add_keygen_arguments, run_keygen),
    "export-dataset": (
        "the store's ratings as a Hugging Face dataset (TRL's KTO takes it as is)",
        # its arguments come from crlhf_contract.dataset, which imports pydantic
        _lazy(".dataset_export", "add_export_dataset_arguments"),
        _lazy(".dataset_export", "run_export_dataset"),
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or with ``command``, of that one alone in full: the
    others are listed by name and help, their arguments (and imports) left out."""
    parser = argparse.ArgumentParser(
        prog="crlhf-train", description="crlhf's nightly trainer: aggregate, train, publish."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is not None and name != command:
            continue
        add_arguments(p)
        if name in SIGNED:
            p.add_argument(
                "--signing-key",
                metavar="FILE",
                help="Ed25519 private key (crlhf-train keygen) to sign the adapter with "
                "(env CRLHF_SIGNING_KEY)",
            )
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the subcommand is the first word that is no option (the top level has only -h);
    # with none or an unknown one, argparse prints the usage: no arguments needed
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    if getattr(args, "signing_key", None):
        # publish() reads it there, so the flag reaches the upload of any subcommand.
        os.environ["CRLHF_SIGNING_KEY"] = args.signing_key
    try:
        return args.run(args)
    except (CrlhfTrainError, AggregationError) as exc:
        print(f"crlhf-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
