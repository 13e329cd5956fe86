"""Fill a store's database directly with a simulated crowd, for the agreement stats' tests.

Faster than ``crowd.py`` (no server, no HTTP) so each test can have its own database on
both backends. ``crlhf_trainer.simulate`` draws the crowd; the first ``honeypots``
completions become honeypots (the store's import, truth from the simulator); the rest are
model completions written by ``author``, who never rates (so no vote is ``own``); every
simulated label is one line rating; then em2 aggregates the labels, the honeypots as gold,
and its run is stored as the trainer would post it (``method``: another aggregation).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np
from crlhf_contract.schemas import AggregationRunIn, AnnotatorReliabilityIn, HoneypotIn
from crlhf_store.aggregation_runs import store_run
from crlhf_store.db import Database
from crlhf_store.honeypots import import_honeypots
from crlhf_store.models import Annotator, Completion, LineRating
from crlhf_store.tokens import create_annotator
from crlhf_trainer.aggregation import aggregate
from crlhf_trainer.aggregation.labels import LabelSet
from crlhf_trainer.simulate import SimulatedCrowd, simulate_crowd
from sqlalchemy import select
from sqlalchemy.orm import Session

MIX = {"reliable": 4, "mediocre": 2, "spammer": 1, "always_up": 1, "adversary": 1}
LANGUAGES = ["python", "go", "rust"]
LINES = 4


@dataclass
class CrowdDb:
    crowd: SimulatedCrowd
    labels: LabelSet
    """The crowd's labels with the honeypot lines as gold (what em2 was fitted on)."""
    ids: dict[int, uuid.UUID]
    """Completion number → its id in the store."""
    names: list[str]
    """Simulated annotator index → name."""
    tokens: dict[str, str]
    honeypots: int
    p_correct: np.ndarray
    """The aggregation's posterior per simulated line (honeypots clamped)."""

    def line(self, item: int) -> tuple[uuid.UUID, int]:
        k, line = divmod(item, LINES)
        return self.ids[k], line

    def language(self, item: int) -> str:
        return "python" if item // LINES < self.honeypots else LANGUAGES[item // LINES % 3]


def code(k: int) -> str:
    return "\n".join(f"v_{k}_{line} = f({k}, {line})" for line in range(LINES))


def fill_db(
    db: Database,
    *,
    completions: int = 60,
    honeypots: int = 12,
    seed: int = 3,
    aggregated: bool = True,
    method: str = "em2",
) -> CrowdDb:
    crowd = simulate_crowd(
        completions * LINES,
        sum(MIX.values()),
        MIX,
        labels_per_item=(2, 4),
        honeypot_rate=0.0,
        seed=seed,
        lines_per_completion=LINES,
    )
    names = list(crowd.labels.annotators)
    with db.writing() as s:
        tokens = {n: create_annotator(s, name=n) for n in [*names, "author"]}
        ids = _completions(s, crowd, honeypots, completions)
        who = dict(s.execute(select(Annotator.name, Annotator.id)).all())
        labels = crowd.labels
        for item, ann, label in zip(
            labels.item_idx, labels.annotator_idx, labels.label, strict=True
        ):
            k, line = divmod(int(item), LINES)
            s.add(
                LineRating(
                    event_id=uuid.uuid4(),
                    completion_id=ids[k],
                    annotator_id=who[names[ann]],
                    line=line,
                    label=int(label),
                )
            )
    gold = {i: int(crowd.truth[i]) for i in range(honeypots * LINES)}
    with_gold = LabelSet(
        labels.items, labels.annotators, labels.item_idx, labels.annotator_idx, labels.label, gold
    )
    result = aggregate(with_gold, method)
    if aggregated:
        _store(db, with_gold, result)
    return CrowdDb(crowd, with_gold, ids, names, tokens, honeypots, result.p_correct)


def _completions(
    s: Session, crowd: SimulatedCrowd, honeypots: int, completions: int
) -> dict[int, uuid.UUID]:
    """The honeypots (the store's import) and the author's completions; their ids."""
    author = s.scalar(select(Annotator.id).where(Annotator.name == "author"))
    import_honeypots(
        s,
        honeypots=[
            HoneypotIn(
                prompt=f"# honeypot {k}\n",
                text=code(k),
                truth=[int(crowd.truth[k * LINES + i]) for i in range(LINES)],  # type: ignore[misc]
            )
            for k in range(honeypots)
        ],
    )
    by_prompt = dict(
        s.execute(select(Completion.prompt, Completion.id).where(Completion.is_honeypot)).all()
    )
    ids = {k: by_prompt[f"# honeypot {k}\n"] for k in range(honeypots)}
    for k in range(honeypots, completions):
        ids[k] = uuid.uuid4()
        s.add(
            Completion(
                id=ids[k],
                annotator_id=author,
                prompt=f"def f{k}():\n",
                language=LANGUAGES[k % 3],
                text=code(k),
                n_lines=LINES,
                model="tiny",
                content_hash=hashlib.sha256(code(k).encode()).hexdigest(),
            )
        )
    s.flush()
    return ids


def _store(db: Database, labels: LabelSet, result) -> None:  # type: ignore[no-untyped-def]
    def unit(v: float) -> float:
        return min(1.0, max(0.0, float(v)))

    run = AggregationRunIn(
        method=result.method,
        n_labels=labels.n_labels,
        n_items=labels.n_items,
        annotators=[
            AnnotatorReliabilityIn(
                annotator=a.annotator,
                reliability=unit(a.reliability),
                low=unit(a.low),
                high=unit(a.high),
                spammer_score=unit(a.spammer_score),
                flag=a.flag,
                sensitivity=a.sensitivity,
                specificity=a.specificity,
                n_labels=a.n_labels,
            )
            for a in result.annotators
        ],
        metrics={"class_prior": result.class_prior},
    )
    with db.writing() as s:
        store_run(s, run=run, created_by="trainer")
