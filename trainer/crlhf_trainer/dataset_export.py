"""``crlhf-train export-dataset``: the store's ratings as a Hugging Face dataset, over the API.

For a trainer token, where ``crlhf-store export-dataset`` (which reads the database) is out
of reach. It pulls like the nightly does (:func:`crlhf_trainer.pull.pull`, into a work dir:
a fresh one, or the nightly's with ``--work-dir`` to pull only what is new), turns the
labels (and the retention verdicts, as the nightly does) into rewards with
:func:`crlhf_trainer.rewards.aggregate_labels` (posting no run),
and lays them out with :mod:`crlhf_contract.dataset`, the layout both commands share.

    CRLHF_TOKEN=… crlhf-train export-dataset --store-url URL [--format hf] OUT/
        [--aggregation em2|paper|paper-l1|mv] [--no-implicit-labels] [--work-dir DIR]
        [--include-honeypots]
        [--include-authors] [--force]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from crlhf_contract.dataset import FORMATS, DatasetExportError, ExportOptions, add_export_options

from .errors import CrlhfTrainError, NoTrainingData

if TYPE_CHECKING:
    from .pull import WorkDir

__all__ = ["ExportError", "add_export_dataset_arguments", "export_dataset", "run_export_dataset"]


class ExportError(CrlhfTrainError):
    """An export that cannot be made (an output folder in the way, nothing rated …)."""


def add_export_dataset_arguments(p: argparse.ArgumentParser) -> None:
    from .commands import _store

    p.description = (
        "Pull the store's ratings (trainer token) and write OUT/: a datasets.DatasetDict "
        "(save_to_disk; load it with datasets.load_from_disk) with the splits `kto` (prompt, "
        "completion, label, reward and its interval: TRL's KTOTrainer takes it as is) and "
        "`lines` (each line's text, P(correct) and votes, annotators pseudonymous), and "
        "README.md, a dataset card whose license: the team fills in. The labels are "
        "aggregated here (nothing is posted); annotator names and tokens never leave; "
        "honeypots and authors only when asked."
    )
    _store(p)
    p.add_argument("out", type=Path, metavar="OUT", help="a new or empty folder")
    p.add_argument("--format", choices=FORMATS, default="hf", help="hf: Hugging Face datasets")
    p.add_argument("--aggregation", choices=["em2", "paper", "paper-l1", "mv"], default="em2")
    p.add_argument(
        "--no-implicit-labels",
        dest="implicit_labels",
        action="store_false",
        help="aggregate the 👍/👎 ratings only; by default the developers' retention verdicts "
        "count too (implicit:<name> pseudo-annotators), as in the nightly run",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        help="pull into this folder (the nightly's, to pull only what is new; default: a "
        "temporary one, removed afterwards)",
    )
    add_export_options(
        p,
        honeypots_help=(
            "add the honeypots' lines, votes and truth (`lines.truth`; their text is not "
            "served by the API): this tells whoever gets the dataset which lines are honeypots"
        ),
    )


def run_export_dataset(args: argparse.Namespace) -> int:
    from .commands import _token
    from .errors import TrainConfigError
    from .progress import bars

    if not args.store_url:
        raise TrainConfigError("no store: pass --store-url URL (or set CRLHF_STORE_URL)")
    options = ExportOptions(
        include_honeypots=args.include_honeypots, include_authors=args.include_authors
    )
    with bars() as progress:
        summary = export_dataset(
            args.store_url,
            _token(args),
            args.out,
            method=args.aggregation,
            implicit=args.implicit_labels,
            options=options,
            work_dir=args.work_dir,
            force=args.force,
            progress=progress,
        )
    print(f"wrote {summary} to {args.out} (load it with datasets.load_from_disk)")
    return 0


def export_dataset(
    store_url: str,
    token: str | None,
    out: Path,
    *,
    method: str = "em2",
    implicit: bool = True,
    options: ExportOptions | None = None,
    work_dir: Path | None = None,
    force: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> str:
    """Pull, aggregate (``implicit``: with the retention verdicts, as the nightly run does),
    write ``out``; returns what it wrote, in words."""
    from crlhf_contract.client import StoreClient
    from crlhf_contract.dataset import check_out

    from .pull import WorkDir, pull

    options = options or ExportOptions()
    try:
        check_out(Path(out), force=force)
        _need_datasets()
        with tempfile.TemporaryDirectory(prefix="crlhf-export-") as scratch:
            work = WorkDir(work_dir or scratch)
            with StoreClient(store_url, token) as client:
                pull(client, work, on_page=lambda _, n: progress and progress("pull", n, None))
            return _write(work, Path(out), method, options, implicit=implicit)
    except DatasetExportError as exc:
        raise ExportError(str(exc)) from None


def _write(work: WorkDir, out: Path, method: str, options: ExportOptions, *, implicit: bool) -> str:
    from crlhf_contract.dataset import (
        Aggregation,
        RewardRow,
        build_splits,
        dataset_card,
        write_dataset,
    )
    from crlhf_contract.schemas import completion_lines

    from .rewards import aggregate_labels, pulled_labels

    pages = work.label_pages()
    labels = pulled_labels(work, implicit=implicit)
    if labels.n_labels == 0:
        raise NoTrainingData(
            "no line ratings in the store yet: nothing to export; the team rates accepted "
            "lines 👍/👎 in their editors"
        )
    completions = work.completions()
    line_counts = {cid: len(completion_lines(c.get("text", ""))) for cid, c in completions.items()}
    result, rewards = aggregate_labels(labels, method, line_counts)
    aggregation = Aggregation(
        method=result.method,
        source=f"computed by crlhf-train export-dataset at {datetime.now(UTC):%Y-%m-%d %H:%M} "
        f"UTC from {labels.n_labels} labels",
        rewards={
            cid: RewardRow(r.mean, r.low, r.high, r.line_posteriors) for cid, r in rewards.items()
        },
        flags={a.annotator: a.flag for a in result.annotators},
    )
    honeypots: dict[str, list[int]] = {}
    for page in pages:
        honeypots |= page.get("honeypots", {})
    splits = build_splits(
        completions=completions,
        votes=(row for page in pages for row in page["labels"]),
        honeypots=honeypots,
        aggregation=aggregation,
        options=options,
    )
    write_dataset(out, splits, dataset_card(splits, aggregation, options), options)
    return f"{len(splits['kto'])} completions (kto) and {len(splits['lines'])} lines"


def _need_datasets() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise DatasetExportError(
            "the Hugging Face `datasets` library is not installed: pip install 'crlhf[train]'"
        ) from None
