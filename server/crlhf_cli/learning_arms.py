"""Step 3 of the learning benchmark (:mod:`crlhf_cli.learning`): each arm's credit, from the
same pulled export, and how well the aggregations recover the truth of the lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from crlhf_cli.learning_config import CORRECTIONS_ARM
from crlhf_cli.learning_stores import Collected
from crlhf_cli.services import DemoError

__all__ = ["arm_rewards", "line_accuracy"]


def arm_rewards(
    arm: str, work_dir: Path, collected: Sequence[Collected], seed: int
) -> dict[str, Any]:
    """Rewards (per completion, with line posteriors) of one arm, from the pulled export."""
    import numpy as np
    from crlhf_contract.schemas import completion_lines
    from crlhf_trainer.aggregation import AggregationResult, aggregate
    from crlhf_trainer.aggregation.labels import LabelSet, item_key
    from crlhf_trainer.pull import WorkDir
    from crlhf_trainer.rewards import completion_rewards

    work = WorkDir(work_dir)
    labels = LabelSet.from_export(work.label_pages())
    completions = work.completions()
    counts = {cid: len(completion_lines(c.get("text", ""))) for cid, c in completions.items()}
    ours = {c.completion_id for c in collected}
    rng = np.random.default_rng(seed)
    if arm == CORRECTIONS_ARM:
        return {}  # no credit: KTO learns from the developer's correction pairs alone
    if arm == "truth":
        items = [
            item_key(c.completion_id, i)
            for c in collected
            for i, t in enumerate(c.truth)
            if t is not None
        ]
        truth = {item_key(c.completion_id, i): t for c in collected for i, t in enumerate(c.truth)}
        p = np.array([1.0 if truth[i] > 0 else 0.0 for i in items])
        result = AggregationResult("truth", items, p, [], float(p.mean()) if len(p) else 0.5)
    elif arm in ("em2", "mv"):
        result = aggregate(labels, arm)
    elif arm == "random":
        em2 = aggregate(labels, "em2")
        result = replace(em2, method="random", p_correct=rng.permutation(em2.p_correct))
    elif arm == "single":
        order = rng.permutation(labels.n_labels)
        first: dict[int, int] = {}
        for k in order:
            first.setdefault(int(labels.item_idx[k]), int(labels.label[k]))
        items = [labels.items[i] for i in sorted(first)]
        p = np.array([1.0 if first[i] > 0 else 0.0 for i in sorted(first)])
        result = AggregationResult("single", items, p, [], float(p.mean()) if len(p) else 0.5)
    else:
        raise DemoError(f"unknown arm {arm!r}")
    rewards = completion_rewards(result, counts)
    return {cid: r for cid, r in rewards.items() if cid in ours}


def line_accuracy(work: Path, collected: Sequence[Collected]) -> dict[str, Any]:
    """em2, majority vote and a single label against the truth, with their baselines."""
    from dataclasses import asdict as as_dict

    from crlhf_cli.learning_stats import line_scores

    out = {}
    for arm in ("em2", "mv", "single"):
        rewards = arm_rewards(arm, work, collected, seed=0)
        p, t = [], []
        for c in collected:
            r = rewards.get(c.completion_id)
            if r is None:
                continue
            for i, truth in enumerate(c.truth):
                if truth is not None and i < len(r.line_posteriors):
                    p.append(r.line_posteriors[i])
                    t.append(truth)
        out[arm] = as_dict(line_scores(p, t)) if t else None
    return out
