"""How many ratings a crowd needs: uncertainty-first review routing against round-robin.

The crowds of :mod:`crlhf_trainer.simulate` (annotators of known coins, lines of known
truth, 5% honeypot lines), one of them with 30% adversaries and 20% always-👍. Each line
starts with one rating; then, batch after batch, the router picks the lines that get one
more rating from an annotator who has not rated them yet (drawn uniformly, as the review
queue serves whoever asks):

- ``round-robin``: the lines with the fewest ratings first (the queue's old order);
- ``uncertainty``: after each batch the crowd is aggregated (``em2``, honeypots clamped)
  and the lines whose posterior sits nearest 0.5 go first, up to ``--max-per-line``
  ratings; a line already certain (posterior beyond ``--certain``) is asked no more.
  This is what the store does with a posted aggregation run (``review_priority``,
  ``review_target``, see crlhf_store/aggregation_runs.py).

Printed: ratings per line each router needs to reach ``--target`` line accuracy, and the
accuracy each reaches at 2 ratings per line.

    python bench/crowd_budget.py [--lines 3000] [--annotators 40] [--seeds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from crlhf_trainer.aggregation import aggregate
from crlhf_trainer.aggregation.labels import LabelSet
from crlhf_trainer.simulate import simulate_crowd

CROWDS = {
    "reliable-heavy": {"reliable": 0.6, "mediocre": 0.3, "spammer": 0.1},
    "30% adversaries + 20% always-up": {
        "reliable": 0.35,
        "mediocre": 0.15,
        "adversary": 0.3,
        "always_up": 0.2,
    },
}


class Run:
    """One crowd's labels growing under a router; accuracy after each batch."""

    def __init__(self, crowd, seed: int, n_lines: int) -> None:  # type: ignore[no-untyped-def]
        self.truth = crowd.truth
        self.sens, self.spec = crowd.sensitivity, crowd.specificity
        self.gold = dict(crowd.labels.gold)
        self.rng = np.random.default_rng(seed + 1000)
        self.n_ann = len(self.sens)
        self.items: list[int] = []
        self.anns: list[int] = []
        self.labels: list[int] = []
        self.rated = [set() for _ in range(n_lines)]  # type: ignore[var-annotated]
        self.count = np.zeros(n_lines, dtype=np.int32)
        self.names = [f"l{i}" for i in range(n_lines)]

    def rate(self, lines: np.ndarray) -> None:
        for i in lines:
            free = [a for a in range(self.n_ann) if a not in self.rated[i]]
            if not free:
                continue
            a = int(self.rng.choice(free))
            p_up = self.sens[a] if self.truth[i] > 0 else 1 - self.spec[a]
            self.items.append(int(i))
            self.anns.append(a)
            self.labels.append(1 if self.rng.random() < p_up else -1)
            self.rated[i].add(a)
            self.count[i] += 1

    def posterior(self) -> np.ndarray:
        ls = LabelSet.from_arrays(
            self.names,
            [f"a{j}" for j in range(self.n_ann)],
            np.array(self.items),
            np.array(self.anns),
            np.array(self.labels),
            self.gold,
        )
        return aggregate(ls, "em2").p_correct

    def accuracy(self, p: np.ndarray) -> float:
        return float(((p > 0.5) == (self.truth > 0)).mean())


def simulate(router: str, mix: dict[str, float], args: argparse.Namespace, seed: int):  # type: ignore[no-untyped-def]
    crowd = simulate_crowd(
        args.lines, args.annotators, mix, labels_per_item=(1, 1), honeypot_rate=0.05, seed=seed
    )
    run = Run(crowd, seed, args.lines)
    run.rate(np.arange(args.lines))
    batch = max(1, int(args.batch * args.lines))
    curve = []  # (ratings per line, accuracy)
    p = run.posterior()
    curve.append((len(run.labels) / args.lines, run.accuracy(p)))
    while len(run.labels) < args.budget * args.lines:
        open_ = run.count < (args.max_per_line if router == "uncertainty" else args.annotators)
        if router == "uncertainty":
            uncertain = np.abs(p - 0.5)
            open_ &= uncertain < args.certain - 0.5
            order = np.lexsort((run.rng.random(args.lines), run.count, uncertain))
        else:
            order = np.lexsort((run.rng.random(args.lines), run.count))
        picked = order[open_[order]][:batch]
        if len(picked) == 0:
            break
        run.rate(picked)
        p = run.posterior()
        curve.append((len(run.labels) / args.lines, run.accuracy(p)))
    return curve


def needed(curve: list[tuple[float, float]], target: float) -> float | None:
    for per_line, acc in curve:
        if acc >= target:
            return per_line
    return None


def at(curve: list[tuple[float, float]], per_line: float) -> float:
    best = curve[0][1]
    for x, acc in curve:
        if x <= per_line + 1e-9:
            best = acc
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--annotators", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--budget", type=float, default=9.0, help="most ratings per line")
    parser.add_argument("--batch", type=float, default=0.1, help="share of lines per batch")
    parser.add_argument("--max-per-line", type=int, default=11)
    parser.add_argument("--certain", type=float, default=0.99)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    for name, mix in CROWDS.items():
        result = {}
        for router in ("round-robin", "uncertainty"):
            curves = [simulate(router, mix, args, seed) for seed in range(args.seeds)]
            need = [needed(c, args.target) for c in curves]
            result[router] = (
                None if None in need else float(np.mean(need)),  # type: ignore[arg-type]
                float(np.mean([at(c, 2.0) for c in curves])),
            )
        rows.append((name, result))
    print(
        f"{args.lines} lines, {args.annotators} annotators, 5% honeypot lines, em2, "
        f"{args.seeds} seed(s), {time.perf_counter() - t0:.0f} s"
    )
    head = f"{'crowd':34} {'router':12} {f'ratings/line to {args.target:.0%}':>22}"
    print(head + f" {'accuracy at 2/line':>19}")
    for name, result in rows:
        base = result["round-robin"][0]
        for router, (need, acc2) in result.items():
            need_s = "not reached" if need is None else f"{need:.2f}"
            if router == "uncertainty" and need is not None and base:
                need_s += f" ({1 - need / base:+.0%})".replace("+", "-", 1)
            print(f"{name:34} {router:12} {need_s:>22} {acc2:>19.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
