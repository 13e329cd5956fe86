"""``crlhf-store export-dataset``: the store's database as a Hugging Face dataset.

The store does not aggregate (it imports nothing of the trainer): the rewards, their
intervals and the line posteriors are those of the trainer's last aggregation run (or the
one asked for), which the nightly computed with ``aggregate_labels`` and posted. The
completions and the votes are read from the database as they are now. The layout, the
pseudonyms and the card are :mod:`crlhf_contract.dataset`'s, shared with ``crlhf-train
export-dataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crlhf_contract.dataset import (
    Aggregation,
    DatasetExportError,
    ExportOptions,
    RewardRow,
    build_splits,
    dataset_card,
    write_dataset,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crlhf_store.models import (
    AggregationRun,
    Annotator,
    AnnotatorReliability,
    Completion,
    CompletionReward,
    Honeypot,
    LineRating,
)

__all__ = [
    "count_rows",
    "export_dataset",
    "need_datasets",
    "read_aggregation",
    "read_completions",
    "read_honeypots",
    "read_votes",
]

Advance = Callable[[str, int], None]
"""``advance(what, rows)``: the CLI's progress bar."""

_BATCH = 5000


def export_dataset(db: Any, out: Path, *, run_id: int | None, options: ExportOptions) -> str:
    """Write the dataset of ``db`` (a :class:`crlhf_store.db.Database`) into ``out``;
    returns what it wrote, in words. A progress bar on stderr while it reads."""
    with db.reading() as session:
        aggregation = read_aggregation(session, run_id)
        with _bars(count_rows(session)) as advance:
            splits = build_splits(
                completions=read_completions(session, advance),
                votes=read_votes(session, advance),
                honeypots=read_honeypots(session),
                aggregation=aggregation,
                options=options,
            )
    write_dataset(out, splits, dataset_card(splits, aggregation, options), options)
    return f"{len(splits['kto'])} completions (kto) and {len(splits['lines'])} lines"


def need_datasets() -> None:
    """Refuse early, naming the fix, where the ``datasets`` library is missing."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise DatasetExportError(
            "the Hugging Face `datasets` library is not installed here: "
            "pip install 'crlhf[store,dataset]'"
        ) from None


@contextmanager
def _bars(totals: dict[str, int]) -> Iterator[Advance]:
    """A bar per kind of row read, on stderr (gone when done)."""
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        tasks = {what: progress.add_task(f"reading {what}", total=n) for what, n in totals.items()}
        yield lambda what, n: progress.advance(tasks[what], n)


def read_aggregation(session: Session, run_id: int | None = None) -> Aggregation:
    """Run ``run_id`` (default: the latest) as an :class:`Aggregation`."""
    query = select(AggregationRun).order_by(AggregationRun.id.desc()).limit(1)
    if run_id is not None:
        query = select(AggregationRun).where(AggregationRun.id == run_id)
    run = session.scalars(query).first()
    if run is None:
        raise DatasetExportError(
            f"no aggregation run {run_id} in this database (GET /v1/aggregation-runs lists them)"
            if run_id is not None
            else "no aggregation run yet: the rewards come from the nightly trainer's "
            "(crlhf-train run, or crlhf-train export-dataset, which aggregates itself); "
            "have the team rate some lines and let it run first"
        )
    rows = session.execute(
        select(
            CompletionReward.completion_id,
            CompletionReward.reward,
            CompletionReward.low,
            CompletionReward.high,
            CompletionReward.line_posteriors,
        ).where(CompletionReward.run_id == run.id)
    ).all()
    if any(r.line_posteriors is None for r in rows):
        raise DatasetExportError(
            f"aggregation run {run.id} has no per-line posteriors (a trainer older than "
            "them posted it); run the nightly trainer again, or use crlhf-train export-dataset"
        )
    flags = session.execute(
        select(AnnotatorReliability.annotator, AnnotatorReliability.flag).where(
            AnnotatorReliability.run_id == run.id
        )
    ).all()
    return Aggregation(
        method=run.method,
        # not run.created_by: the trainer's token has an annotator's name
        source=f"aggregation run {run.id} of {run.created_at:%Y-%m-%d %H:%M} UTC "
        f"({run.n_labels} labels)",
        rewards={
            str(r.completion_id): RewardRow(r.reward, r.low, r.high, list(r.line_posteriors))
            for r in rows
        },
        flags=dict(flags),
    )


def count_rows(session: Session) -> dict[str, int]:
    """How many completions and current line ratings there are (the progress bar's totals)."""
    n_completions = session.scalar(select(func.count()).select_from(Completion)) or 0
    n_votes = session.scalar(
        select(func.count()).select_from(LineRating).where(LineRating.superseded.is_(False))
    )
    return {"completions": n_completions, "votes": n_votes or 0}


def read_completions(session: Session, advance: Advance | None = None) -> dict[str, dict]:
    """Every completion (honeypots included: the caller leaves them out or not) by id."""
    query = (
        select(
            Completion.id,
            Completion.prompt,
            Completion.text,
            Completion.language,
            Annotator.name,
        )
        .outerjoin(Annotator, Annotator.id == Completion.annotator_id)
        .order_by(Completion.created_at, Completion.id)
        .execution_options(yield_per=_BATCH)
    )
    out: dict[str, dict] = {}
    for batch in session.execute(query).partitions():
        for cid, prompt, text, language, author in batch:
            out[str(cid)] = {
                "prompt": prompt,
                "text": text,
                "language": language,
                "annotator": author,
            }
        if advance:
            advance("completions", len(batch))
    return out


def read_votes(session: Session, advance: Advance | None = None) -> Iterator[dict[str, Any]]:
    """Every current line rating, shaped as the label export's rows, oldest first."""
    query = (
        select(
            LineRating.completion_id,
            LineRating.line,
            Annotator.name,
            LineRating.label,
            LineRating.own,
        )
        .join(Annotator, Annotator.id == LineRating.annotator_id)
        .where(LineRating.superseded.is_(False))
        .order_by(LineRating.id)
        .execution_options(yield_per=_BATCH)
    )
    for batch in session.execute(query).partitions():
        for cid, line, name, label, own in batch:
            yield {
                "completion_id": cid,
                "line": line,
                "annotator": name,
                "label": label,
                "own": own,
            }
        if advance:
            advance("votes", len(batch))


def read_honeypots(session: Session) -> dict[str, list[int]]:
    return {
        str(cid): list(t)
        for cid, t in session.execute(select(Honeypot.completion_id, Honeypot.truth))
    }
