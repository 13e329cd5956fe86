"""The demo's aggregation step: em2 and majority vote on the store's export, scored
against the truth the demo knows (execution or the conventions) and the crowd it simulated.

The estimators are the nightly run's (``aggregate_labels``); what is the demo's own is the
scoring: line accuracy against the truth, each annotator's estimated reliability beside
the accuracy the simulation gave it, and which of the flagged annotators were unreliable.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from crlhf_contract.client import StoreClient
from crlhf_contract.schemas import completion_lines
from crlhf_trainer.aggregation.items import item_key
from crlhf_trainer.aggregation.labels import LabelSet
from crlhf_trainer.rewards import aggregate_labels

from crlhf_cli.learning_stats import line_scores

if TYPE_CHECKING:
    from crlhf_cli.crowd import SimAnnotator
    from crlhf_cli.steps import Rated

__all__ = ["BAD_KINDS", "aggregate", "annotator_rows", "reward_rows", "scored_lines", "summarise"]

BAD_KINDS = {"spammer", "always_up", "adversary"}
"""The simulated annotators aggregation should flag."""


def aggregate(store_url: str, token: str, rated: list[Rated]) -> tuple[LabelSet, Any, Any, Any]:
    """(labels, em2 result, majority vote result, em2's rewards) of the store's export."""
    counts = {r.completion.id: len(completion_lines(r.completion.text)) for r in rated}
    with StoreClient(store_url, token) as client:
        pages = [p.model_dump(mode="json") for p in client.iter_label_pages()]
    labels = LabelSet.from_export(pages)
    em2, rewards = aggregate_labels(labels, "em2", counts)
    mv, _ = aggregate_labels(labels, "mv", counts)
    return labels, em2, mv, rewards


def scored_lines(labels: LabelSet, rated: list[Rated]) -> list[tuple[int, int]]:
    """(index in ``labels.items``, true label) of each rated line with a known truth."""
    truth = {
        item_key(r.completion.id, line): t
        for r in rated
        for line, t in enumerate(r.truth)
        if t is not None
    }
    index = {item: i for i, item in enumerate(labels.items)}
    return [(index[item], t) for item, t in truth.items() if item in index]


def _scores(p: Any, scored: list[tuple[int, int]]) -> dict[str, Any] | None:
    if not scored:
        return None
    return asdict(line_scores([p[i] for i, _ in scored], [t for _, t in scored]))


def annotator_rows(crowd: list[SimAnnotator], em2: Any) -> list[dict[str, Any]]:
    """Each simulated annotator's accuracy beside em2's estimate of it."""
    estimated = {a.annotator: a for a in em2.annotators}
    return [
        {
            "name": a.name,
            "kind": a.kind,
            "simulated": a.observed_accuracy,
            "estimated": estimated[a.name].reliability,
            "low": estimated[a.name].low,
            "high": estimated[a.name].high,
            "flag": estimated[a.name].flag,
            "labels": a.labels,
        }
        for a in crowd
        if a.name in estimated
    ]


def summarise(
    labels: LabelSet, rated: list[Rated], crowd: list[SimAnnotator], em2: Any, mv: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the summary's aggregation figures, the annotator rows) of one aggregation."""
    scored = scored_lines(labels, rated)
    em2_scores, mv_scores = _scores(em2.p_correct, scored), _scores(mv.p_correct, scored)
    kinds = {a.name: a for a in crowd}
    annotators = annotator_rows(crowd, em2)
    errors = [
        abs(a["estimated"] - a["simulated"]) for a in annotators if a["simulated"] is not None
    ]
    flagged = sorted(a["name"] for a in annotators if a["flag"] != "ok")
    summary = {
        "method": "em2",
        "lines": len(scored),
        "labels": labels.n_labels,
        "accuracy": None if em2_scores is None else em2_scores["accuracy"],
        "majority_vote_accuracy": None if mv_scores is None else mv_scores["accuracy"],
        # beside each accuracy: the constant baseline, balanced accuracy, AUC, Brier
        "scores": {"em2": em2_scores, "majority_vote": mv_scores},
        "flagged_annotators": flagged,
        "flagged_unreliable": sum(kinds[n].kind in BAD_KINDS for n in flagged),
        "unreliable_annotators": sum(a.kind in BAD_KINDS for a in crowd),
        "reliability_mae": sum(errors) / len(errors) if errors else None,
    }
    return summary, annotators


def reward_rows(rated: list[Rated], rewards: dict[Any, Any]) -> list[dict[str, Any]]:
    """em2's reward of each accepted completion beside whether it passed."""
    by_id = {r.completion.id: r for r in rated}
    return [
        {
            "completion_id": cid,
            "reward": rw.mean,
            "low": rw.low,
            "high": rw.high,
            "passed": by_id[cid].passed,
        }
        for cid, rw in rewards.items()
        if cid in by_id
    ]
