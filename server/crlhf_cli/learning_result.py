"""The learning benchmark's results: one run per (crowd, seed, method, arm), and the whole
bench's, saved as ``learning.json``, paired across arms, loaded and merged with a later
bench's. The statistics over them are in :mod:`crlhf_cli.learning_stats`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crlhf_cli.services import DemoError

__all__ = ["LearningResult", "RunResult"]


@dataclass
class RunResult:
    crowd: str
    seed: int
    method: str
    arm: str
    improvement: list[float]  # d per held-out item
    train_seconds: float
    steps: int
    final_kl: float | None
    stopped: str | None
    backtracks: int = 0  # updates undone, the step halved, for passing the KL limit
    # the guard: change of q (correct line − its mutated twin, nats/token) per held-out
    # item with a pair (crlhf_cli.learning_eval); positive: prefers correct code more
    pair: list[float] = field(default_factory=list)
    # the trainer's gate on this adapter against the base (crlhf_trainer.gate's to_json)
    gate: dict[str, Any] = field(default_factory=dict)
    corrections: int = 0  # the developer's correction pairs trained on (kto only)


@dataclass
class LearningResult:
    config: dict[str, Any]
    items: list[str]
    base_margin: list[float]
    completions: int
    lines: int
    share_breaking: float
    runs: list[RunResult] = field(default_factory=list)
    accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    base_pair: list[float | None] = field(default_factory=list)  # q of the base per item
    unit: str = "nats/token"  # of the improvement: nats/token (conventions) or pass@1 (execution)

    def table(
        self,
        crowd: str,
        method: str,
        arm: str,
        seeds: set[int] | None = None,
        metric: str = "improvement",
    ) -> list[list[float]]:
        """[seeds][items] improvements (or ``metric="pair"``: the guard's changes) of one arm
        (truth is the same for every crowd), of every seed it ran or of ``seeds`` only."""
        rows = [
            r
            for r in self.runs
            if r.method == method and r.arm == arm and (arm == "truth" or r.crowd == crowd)
        ]
        rows = [r for r in rows if seeds is None or r.seed in seeds]
        tables = [getattr(r, metric) for r in sorted(rows, key=lambda r: r.seed)]
        return [t for t in tables if t]  # runs of an older bench have no guard

    def paired(self, crowd: str, method: str, *arms: str) -> list[list[list[float]]]:
        """The tables of ``arms`` on the seeds they all ran (what a paired interval needs)."""
        runs = [r for r in self.runs if r.method == method]
        common = set.intersection(
            *(
                {r.seed for r in runs if r.arm == a and (a == "truth" or r.crowd == crowd)}
                for a in arms
            )
        )
        return [self.table(crowd, method, a, common) for a in arms]

    @classmethod
    def load(cls, path: Path) -> LearningResult:
        data = json.loads(Path(path).read_text())
        data["runs"] = [RunResult(**r) for r in data["runs"]]
        return cls(**data)

    def merge(self, other: LearningResult) -> LearningResult:
        """Runs of another bench on the same completions and held-out items (more seeds,
        crowds or arms); a seed run twice is kept once."""
        if other.items != self.items or other.base_margin != self.base_margin:
            raise DemoError("runs to merge must share the held-out items and the base model")
        if other.completions != self.completions or other.lines != self.lines:
            raise DemoError("runs to merge must share the completions")
        seen = {(r.crowd, r.seed, r.method, r.arm) for r in self.runs}
        runs = self.runs + [r for r in other.runs if (r.crowd, r.seed, r.method, r.arm) not in seen]
        config = dict(self.config)
        for key in ("crowds", "arms", "methods"):
            config[key] = list(dict.fromkeys([*self.config[key], *other.config[key]]))
        return replace(
            self,
            config=config,
            runs=runs,
            accuracy={**self.accuracy, **other.accuracy},
            seconds=self.seconds + other.seconds,
        )
