"""Implicit per-line signals as labels of weak annotators of their own (issue 17).

The store's ``GET /v1/retention/export`` says, per accepted line, whether the developer
kept it (``unchanged``), rewrote it (``edited``, with the Levenshtein distance ``d``) or
removed it (``deleted``) ``after_s`` seconds after the accept. Each developer's verdicts
become the labels of a pseudo-annotator ``implicit:<annotator>``:

- ``unchanged`` → +1 (👍);
- ``deleted``, or ``edited`` with ``d / max(1, |original|) ≥ heavy`` (most of the line
  rewritten) → −1 (👎);
- a light edit (a renamed variable, a changed constant) → no label: kept in spirit, fixed
  in detail, it says too little either way.

Of a line's checks the latest (largest ``after_s``) counts. The pseudo-annotator is then
aggregated like anyone (em2's two coins, Raykar et al. 2010): its sensitivity
``α = P(+1 | line correct)`` and specificity ``β = P(−1 | line wrong)`` are learnt against
the honeypots and the crowd, and its label weighs ``log α/(1−β)`` (a 👍) or
``log (1−α)/β`` (a 👎). A developer who keeps everything labels every line +1: ``β → 0``,
``α → 1``, so a 👍 weighs ``log 1/1 = 0``: an always-👍 annotator, worth nothing, as it
should be. One who deletes what is wrong earns weight like a careful rater.

>>> from crlhf_trainer.aggregation.labels import LabelSet
>>> rows = [{"completion_id": "c", "annotator": "ann", "after_s": 30.0, "lines": [
...     {"line": 0, "state": "unchanged", "distance": 0, "original": "x = 1"},
...     {"line": 1, "state": "deleted", "distance": 6, "original": "return"}]}]
>>> implicit_records(rows)
[('c:0', 'implicit:ann', 1), ('c:1', 'implicit:ann', -1)]
>>> ls = with_implicit(LabelSet.from_records([("c:0", "bob", 1)]), implicit_records(rows))
>>> ls.items, ls.annotators, ls.label.tolist()
(['c:0', 'c:1'], ['bob', 'implicit:ann'], [1, 1, -1])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .items import item_key
from .labels import LabelSet

__all__ = ["IMPLICIT_PREFIX", "implicit_records", "latest_checks", "with_implicit"]

IMPLICIT_PREFIX = "implicit:"
HEAVY_EDIT = 0.5
"""An edit changing at least this share of a line's characters counts as a 👎."""


def latest_checks(
    rows: Iterable[Mapping[str, Any]],
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``(row, line)`` of each line's latest retention check in export ``rows``: per
    completion, line and annotator, a check with a later ``after_s`` (or the same, further
    down) replaces the earlier one, so a line put back by the 5-minute check is kept."""
    latest: dict[tuple[str, int, str], tuple[float, Mapping[str, Any], Mapping[str, Any]]] = {}
    for row in rows:
        after = float(row.get("after_s", 0.0))
        for line in row.get("lines", []):
            key = (str(row["completion_id"]), int(line["line"]), str(row.get("annotator", "")))
            if key not in latest or after >= latest[key][0]:
                latest[key] = (after, row, line)
    return [(row, line) for _, row, line in latest.values()]


def implicit_records(
    rows: Iterable[Mapping[str, Any]], heavy: float = HEAVY_EDIT
) -> list[tuple[str, str, int]]:
    """``(item, implicit:<annotator>, ±1)`` from retention export rows, the latest check of
    each line counting."""
    records = []
    for row, line in latest_checks(rows):
        verdict = _verdict(line, heavy)
        if verdict is not None:
            item = item_key(row["completion_id"], int(line["line"]))
            records.append((item, IMPLICIT_PREFIX + str(row["annotator"]), verdict))
    return records


def _verdict(line: Mapping[str, Any], heavy: float) -> int | None:
    state = line["state"]
    if state == "unchanged":
        return 1
    if state == "deleted":
        return -1
    share = int(line.get("distance", 0)) / max(1, len(str(line.get("original", "")).strip()))
    return -1 if share >= heavy else None


def with_implicit(labels: LabelSet, records: Iterable[tuple[str, str, int]]) -> LabelSet:
    """``labels`` plus the implicit ``records`` (their items and pseudo-annotators added
    after the existing ones; honeypot truth unchanged)."""
    items = {name: i for i, name in enumerate(labels.items)}
    annotators = {name: a for a, name in enumerate(labels.annotators)}
    extra_items, extra_annotators, extra_labels = [], [], []
    for item, who, y in records:
        extra_items.append(items.setdefault(item, len(items)))
        extra_annotators.append(annotators.setdefault(who, len(annotators)))
        extra_labels.append(1 if y > 0 else -1)
    if not extra_labels:
        return labels
    return LabelSet.from_arrays(
        list(items),
        list(annotators),
        np.concatenate([labels.item_idx, np.array(extra_items, dtype=np.int32)]),
        np.concatenate([labels.annotator_idx, np.array(extra_annotators, dtype=np.int32)]),
        np.concatenate([labels.label, np.array(extra_labels, dtype=np.int8)]),
        labels.gold,
    )
