"""crlhf_trainer.aggregation.implicit on a simulated team: retention verdicts become labels
of ``implicit:<developer>`` pseudo-annotators; em2 learns that a developer who keeps every
line is an always-👍 annotator (specificity ≈ 0, flagged, no weight), and informative
retention lifts line accuracy where explicit ratings are few."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from crlhf_trainer.aggregation import aggregate
from crlhf_trainer.aggregation.implicit import implicit_records, with_implicit
from crlhf_trainer.aggregation.labels import LabelSet

LINES = 3
ORIGINAL = "value = compute(x)"


@dataclass
class Team:
    explicit: LabelSet
    retention: list[dict[str, Any]]
    truth: dict[str, int]  # non-honeypot lines only


def simulate(
    seed: int = 0, completions: int = 240, rate_share: float = 0.15, honeypots: int = 60
) -> Team:
    """Lines correct with p = 0.7; 6 raters (π ≈ 0.9) rate a ``rate_share`` of the lines
    and every honeypot 3 times; 4 developers wrote the completions: 3 keep a correct line
    with α = 0.9 and delete or rewrite a wrong one with β = 0.8, one keeps everything."""
    rng = np.random.default_rng(seed)
    raters = [f"rater{k}" for k in range(6)]
    developers = ["dev0", "dev1", "dev2", "keeper"]
    records: list[tuple[str, str, int]] = []
    truth: dict[str, int] = {}
    retention = []

    def rate(item: str, y: int, who: str) -> None:
        records.append((item, who, y if rng.random() < 0.9 else -y))

    for c in range(completions):
        author = developers[c % len(developers)]
        lines = []
        for line in range(LINES):
            item, y = f"c{c}:{line}", 1 if rng.random() < 0.7 else -1
            truth[item] = y
            if rng.random() < rate_share:
                rate(item, y, str(rng.choice(raters)))
            keep = True if author == "keeper" else rng.random() < (0.9 if y == 1 else 0.2)
            if keep:
                lines.append({"line": line, "state": "unchanged", "distance": 0})
            elif rng.random() < 0.5:
                lines.append({"line": line, "state": "deleted", "distance": len(ORIGINAL)})
            else:
                lines.append({"line": line, "state": "edited", "distance": 14})
        for entry in lines:
            entry["original"] = ORIGINAL
        retention.append(
            {"completion_id": f"c{c}", "annotator": author, "after_s": 300.0, "lines": lines}
        )
    gold = {}
    for h in range(honeypots):
        item, y = f"h{h}:0", 1 if rng.random() < 0.5 else -1
        gold[item] = y
        for who in rng.choice(raters, size=3, replace=False):
            rate(item, y, str(who))
    return Team(LabelSet.from_records(records, gold=gold), retention, truth)


def accuracy(labels: LabelSet, truth: dict[str, int]) -> float:
    """Share of lines whose posterior is on the side of the truth; a line nobody labelled
    is judged by the class prior."""
    result = aggregate(labels, "em2")
    p = dict(zip(result.items, result.p_correct.tolist(), strict=True))
    right = [(p.get(item, result.class_prior) > 0.5) == (y == 1) for item, y in truth.items()]
    return float(np.mean(right))


def test_a_developer_who_keeps_everything_is_an_always_up_annotator() -> None:
    team = simulate()
    labels = with_implicit(team.explicit, implicit_records(team.retention))
    result = aggregate(labels, "em2")
    keeper = result.reliability("implicit:keeper")
    assert keeper.n_labels == 240 // 4 * LINES
    assert keeper.specificity is not None and keeper.specificity < 0.1
    assert keeper.flag == "spammer"  # |α + β − 1| ≈ 0: its 👍 weighs nothing
    for dev in ("dev0", "dev1", "dev2"):
        informative = result.reliability(f"implicit:{dev}")
        assert informative.flag == "ok"
        assert informative.specificity is not None and informative.specificity > 0.6


def test_informative_retention_lifts_line_accuracy_when_ratings_are_few() -> None:
    """Over three teams (a tenth of the lines rated): never worse, better on average. One
    team (seed 1) shows em2 falling into a poorer optimum, the always-keeper dragging the
    class prior up: no lift there, and the mean is what the test holds to."""
    lifts = []
    for seed in (0, 1, 2):
        team = simulate(seed=seed, rate_share=0.1)
        without = accuracy(team.explicit, team.truth)
        implicit = with_implicit(team.explicit, implicit_records(team.retention))
        with_ = accuracy(implicit, team.truth)
        print(f"seed {seed}: line accuracy {without:.3f} explicit only, {with_:.3f} with implicit")
        assert with_ >= without - 0.01
        lifts.append(with_ - without)
    assert np.mean(lifts) >= 0.05


def test_a_light_edit_is_no_label_and_the_latest_check_counts() -> None:
    rows = [
        {
            "completion_id": "c",
            "annotator": "ann",
            "after_s": 300.0,
            "lines": [
                {"line": 0, "state": "edited", "distance": 2, "original": "x = compute(1)"},
                {"line": 1, "state": "deleted", "distance": 6, "original": "return"},
            ],
        },
        {
            "completion_id": "c",
            "annotator": "ann",
            "after_s": 30.0,
            "lines": [{"line": 1, "state": "unchanged", "distance": 0, "original": "return"}],
        },
    ]
    assert implicit_records(rows) == [("c:1", "implicit:ann", -1)]


def test_the_nightly_aggregation_adds_implicit_labels_unless_switched_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from crlhf_trainer.nightly import NightlyConfig, aggregate_work

    cid = "00000000-0000-0000-0000-000000000001"
    label = {"completion_id": cid, "line": 0, "annotator": "bob", "label": 1}
    page = {"labels": [label], "honeypots": {}}
    (tmp_path / "labels.jsonl").write_text(json.dumps(page) + "\n")
    (tmp_path / "completions.jsonl").write_text(json.dumps({"id": cid, "text": "a\nb\n"}) + "\n")
    lines = [
        {"line": 0, "state": "unchanged", "distance": 0, "original": "a"},
        {"line": 1, "state": "deleted", "distance": 1, "original": "b"},
    ]
    event = {"completion_id": cid, "annotator": "alice", "after_s": 300.0, "lines": lines}
    (tmp_path / "retention.jsonl").write_text(json.dumps(event) + "\n")
    cfg = NightlyConfig(store_url="", token=None, model="m", work_dir=tmp_path)
    on, _ = aggregate_work(cfg, post=False)
    assert (on["labels"], on["lines"], on["annotators"]) == (3, 2, 2)
    cfg.implicit_labels = False
    off, _ = aggregate_work(cfg, post=False)
    assert (off["labels"], off["lines"], off["annotators"]) == (1, 1, 1)
