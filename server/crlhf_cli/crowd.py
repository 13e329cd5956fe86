"""A simulated crowd that rates review tasks line by line through the store's HTTP API.

Each annotator has a kind and two coins from the aggregation's simulator
(:mod:`crlhf_trainer.simulate`): sensitivity α = P(👍 | line correct) and specificity
β = P(👎 | line wrong). It asks ``GET /v1/review/next`` with its own token, looks up the
truth of the task's lines (the demo knows it: execution for completions, the import file
for honeypots — the store never tells), draws a label per non-blank line from its coins and
posts them with ``POST /v1/ratings``. Annotators take turns, one task each, until the
queue is empty for all of them or each has answered ``max_honeypots`` honeypots.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from crlhf_contract.client import StoreClient
from crlhf_contract.schemas import RatingIn, ReviewTask

__all__ = ["DEFAULT_MIX", "CrowdStats", "SimAnnotator", "TruthBook", "make_crowd", "rate_all"]

DEFAULT_MIX = {
    "reliable": 0.35,
    "mediocre": 0.20,
    "spammer": 0.15,
    "always_up": 0.15,
    "adversary": 0.15,
}


@dataclass
class SimAnnotator:
    name: str
    kind: str
    sensitivity: float
    specificity: float
    token: str = ""
    agreed: int = 0  # labels equal to the truth
    labels: int = 0
    honeypots: int = 0
    tasks: int = 0

    def label(self, truth: int, rng: random.Random) -> int:
        p_up = self.sensitivity if truth > 0 else 1.0 - self.specificity
        return 1 if rng.random() < p_up else -1

    @property
    def observed_accuracy(self) -> float | None:
        return self.agreed / self.labels if self.labels else None


@dataclass
class TruthBook:
    """The per-line truth of everything the crowd may be served (None: blank, not rated)."""

    by_id: dict[str, list[int | None]] = field(default_factory=dict)
    by_content: dict[tuple[str, str], list[int | None]] = field(default_factory=dict)
    honeypot_keys: set[tuple[str, str]] = field(default_factory=set)

    def lookup(self, task: ReviewTask) -> tuple[list[int | None] | None, bool]:
        """(truth per line, is it a honeypot) for a served task."""
        key = (task.prompt, task.text)
        if str(task.completion_id) in self.by_id:
            return self.by_id[str(task.completion_id)], False
        return self.by_content.get(key), key in self.honeypot_keys


def make_crowd(n: int, mix: dict[str, float], seed: int) -> list[SimAnnotator]:
    """``n`` annotators split by ``mix`` with coins drawn as the simulator draws them."""
    from crlhf_trainer.simulate import simulate_crowd

    sim = simulate_crowd(1, n, mix, labels_per_item=(1, 1), honeypot_rate=0.0, seed=seed)
    return [
        SimAnnotator(f"{kind}-{j:02d}", kind, float(a), float(b))
        for j, (kind, a, b) in enumerate(
            zip(sim.annotator_kind, sim.sensitivity, sim.specificity, strict=True)
        )
    ]


@dataclass
class CrowdStats:
    tasks: int = 0
    honeypot_tasks: int = 0
    ratings: int = 0
    unknown_tasks: int = 0  # served tasks whose truth the demo did not know (skipped)


def rate_all(
    store_url: str,
    crowd: list[SimAnnotator],
    book: TruthBook,
    *,
    max_honeypots: int,
    seed: int,
    on_task: Callable[[SimAnnotator, bool], None] | None = None,
) -> CrowdStats:
    """Let every annotator work the review queue (see the module docstring)."""
    rng = random.Random(seed)
    stats = CrowdStats()
    clients = {a.name: StoreClient(store_url, a.token) for a in crowd}
    active = list(crowd)
    try:
        while active:
            for annotator in list(active):
                task = clients[annotator.name].review_next()
                if task is None:
                    active.remove(annotator)
                    continue
                truth, honeypot = book.lookup(task)
                if truth is None:
                    stats.unknown_tasks += 1
                    continue
                ratings = []
                for line, t in enumerate(truth):
                    if t is None:
                        continue
                    label = annotator.label(t, rng)
                    annotator.agreed += label == t
                    annotator.labels += 1
                    ratings.append(
                        RatingIn(
                            event_id=uuid.uuid4(),
                            completion_id=task.completion_id,
                            line=line,
                            label=label,  # type: ignore[arg-type]
                        )
                    )
                if ratings:
                    clients[annotator.name].post_ratings(ratings)
                annotator.tasks += 1
                annotator.honeypots += honeypot
                stats.tasks += 1
                stats.honeypot_tasks += honeypot
                stats.ratings += len(ratings)
                if on_task:
                    on_task(annotator, honeypot)
                if honeypot and annotator.honeypots >= max_honeypots:
                    active.remove(annotator)
    finally:
        for client in clients.values():
            client.close()
    return stats
