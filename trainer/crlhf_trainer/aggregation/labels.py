"""Line ratings as a compact columnar label set.

A :class:`LabelSet` holds one row per (item, annotator) pair in three parallel numpy
arrays: the item index, the annotator index and the label (+1 correct, -1 wrong).
Honeypot items carry their known truth in ``gold``.  For store data an item is one line
of one completion, named ``f"{completion_id}:{line}"`` (lines are 0-based).

Three ways in: :meth:`LabelSet.from_records` (Python tuples), :meth:`LabelSet.from_csv`
(the ``crlhf-train aggregate`` CSV contract) and :meth:`LabelSet.from_export` (pages of the
store's ``GET /v1/labels/export``).  When an annotator rated the same item twice, the last
label read counts: the store exports labels oldest first, so the newest wins.

>>> ls = LabelSet.from_records([("a", "ann1", 1), ("a", "ann2", -1), ("b", "ann1", 0)],
...                            gold={"b": -1})
>>> ls.items, ls.annotators, ls.label.tolist(), ls.gold
(['a', 'b'], ['ann1', 'ann2'], [1, -1, -1], {1: -1})
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import LabelFileError

__all__ = ["LabelSet", "item_key", "parse_label", "split_item"]


def item_key(completion_id: object, line: int) -> str:
    """The one way an item (a line of a completion) is named: ``"<completion_id>:<line>"``.

    >>> item_key("9f1c", 12)
    '9f1c:12'
    """
    return f"{completion_id}:{int(line)}"


def split_item(item: str) -> tuple[str, int]:
    """``"cid:3"`` -> ``("cid", 3)``; a name without a line suffix is line 0 of itself.

    >>> split_item("9f1c:12"), split_item("plain")
    (('9f1c', 12), ('plain', 0))
    """
    cid, sep, line = item.rpartition(":")
    if sep and line.isdigit():
        return cid, int(line)
    return item, 0


_LABEL_VALUES = {"1": 1, "+1": 1, "0": -1, "-1": -1}


def parse_label(value: object) -> int:
    """Map a label's coding to ±1: 1 is correct; 0 and -1 are wrong.

    >>> [parse_label(v) for v in (1, "0", "-1", True)]
    [1, -1, -1, 1]
    """
    if isinstance(value, bool):
        return 1 if value else -1
    if isinstance(value, int | np.integer) and int(value) in (1, 0, -1):
        return 1 if value == 1 else -1
    if isinstance(value, str) and value.strip() in _LABEL_VALUES:
        return _LABEL_VALUES[value.strip()]
    raise ValueError(f"unknown label {value!r} (use 1 for correct, 0 or -1 for wrong)")


@dataclass(frozen=True)
class LabelSet:
    """Per-line labels: parallel int arrays plus the names they index."""

    items: list[str]
    annotators: list[str]
    item_idx: np.ndarray  # int32, one per label
    annotator_idx: np.ndarray  # int32, one per label
    label: np.ndarray  # int8, +1 correct / -1 wrong
    gold: dict[int, int] = field(default_factory=dict)  # item index -> truth ±1

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)

    @property
    def n_labels(self) -> int:
        return int(self.label.shape[0])

    def gold_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The honeypot items (int64 indices) and their truth (int8 ±1)."""
        idx = np.fromiter(self.gold.keys(), dtype=np.int64, count=len(self.gold))
        truth = np.fromiter(self.gold.values(), dtype=np.int8, count=len(self.gold))
        return idx, truth

    def take(self, rows: np.ndarray) -> LabelSet:
        """The labels at ``rows`` (indices or a boolean mask), same items and annotators."""
        return LabelSet(
            self.items,
            self.annotators,
            self.item_idx[rows],
            self.annotator_idx[rows],
            self.label[rows],
            dict(self.gold),
        )

    @classmethod
    def from_arrays(
        cls,
        items: list[str],
        annotators: list[str],
        item_idx: np.ndarray,
        annotator_idx: np.ndarray,
        label: np.ndarray,
        gold: Mapping[int, int] | None = None,
    ) -> LabelSet:
        """Wrap arrays as they are (no copy of the names, no de-duplication of pairs)."""
        item_idx = np.ascontiguousarray(item_idx, dtype=np.int32)
        annotator_idx = np.ascontiguousarray(annotator_idx, dtype=np.int32)
        label = np.ascontiguousarray(label, dtype=np.int8)
        if not item_idx.shape == annotator_idx.shape == label.shape:
            raise ValueError("item_idx, annotator_idx and label must have the same length")
        if label.size and not np.all((label == 1) | (label == -1)):
            raise ValueError("labels must be +1 or -1")
        return cls(items, annotators, item_idx, annotator_idx, label, dict(gold or {}))

    @classmethod
    def from_records(
        cls,
        records: Iterable[tuple[str, str, int]],
        gold: Mapping[str, int] | None = None,
    ) -> LabelSet:
        """Build from ``(item, annotator, label)`` tuples; gold maps item -> truth.

        Gold items nobody labelled are dropped (there is nothing to aggregate for them).
        """
        items: dict[str, int] = {}
        annotators: dict[str, int] = {}
        pairs: dict[tuple[int, int], int] = {}
        for n, (item, annotator, value) in enumerate(records, start=1):
            try:
                y = parse_label(value)
            except ValueError as exc:
                raise LabelFileError("<records>", n, str(exc)) from None
            i = items.setdefault(str(item), len(items))
            a = annotators.setdefault(str(annotator), len(annotators))
            pairs[(i, a)] = y
        gold_idx: dict[int, int] = {}
        for item, value in (gold or {}).items():
            try:
                truth = parse_label(value)
            except ValueError as exc:
                raise LabelFileError("<gold>", None, f"item {item!r}: {exc}") from None
            if str(item) in items:
                gold_idx[items[str(item)]] = truth
        n = len(pairs)
        keys = np.fromiter((k for pair in pairs for k in pair), dtype=np.int32, count=2 * n)
        return cls(
            list(items),
            list(annotators),
            keys[0::2].copy(),
            keys[1::2].copy(),
            np.fromiter(pairs.values(), dtype=np.int8, count=n),
            gold_idx,
        )

    @classmethod
    def from_csv(cls, labels_path: str | Path, gold_path: str | Path | None = None) -> LabelSet:
        """Read the CLI contract's files.

        ``labels_path``: header ``item,annotator,label``; ``gold_path``: header ``item,label``.
        Labels are 1 (correct), 0 or -1 (wrong).  Bad input raises :class:`LabelFileError`
        naming the file, the line and the problem.
        """
        records = list(_read_csv(labels_path, ("item", "annotator", "label")))
        if not records:
            raise LabelFileError(labels_path, None, "no labels (only a header)")
        gold: dict[str, int] = {}
        if gold_path is not None:
            for line, (item, value) in _read_csv_numbered(gold_path, ("item", "label")):
                if item in gold and gold[item] != value:
                    raise LabelFileError(gold_path, line, f"item {item!r} has two different truths")
                gold[item] = value
        return cls.from_records(records, gold)

    @classmethod
    def from_export(cls, pages: Iterable[dict]) -> LabelSet:
        """Build from pages of the store's ``GET /v1/labels/export`` JSON.

        Each page is ``{"labels": [{"completion_id", "line", "annotator", "label", ...}],
        "honeypots": {"<completion_id>": [1, -1, ...]}, "next": ...}``.  Labels arrive
        oldest first, so an annotator's newest label on a line counts.  A label the store
        marks ``own`` (the author rating their own completion) is no crowd vote and is
        left out, as is one it marks ``superseded``.
        """
        records: list[tuple[str, str, int]] = []
        gold: dict[str, int] = {}
        for n, page in enumerate(pages, start=1):
            where = f"export page {n}"
            if not isinstance(page, Mapping) or "labels" not in page:
                raise LabelFileError(where, None, "not a label export page (no 'labels')")
            for k, row in enumerate(page["labels"], start=1):
                if isinstance(row, Mapping) and (row.get("own") or row.get("superseded")):
                    continue
                try:
                    item = item_key(row["completion_id"], row["line"])
                    records.append((item, str(row["annotator"]), parse_label(row["label"])))
                except (KeyError, TypeError, ValueError) as exc:
                    raise LabelFileError(where, k, f"bad label row: {exc}") from None
            for cid, truths in (page.get("honeypots") or {}).items():
                for line, value in enumerate(truths):
                    try:
                        gold[item_key(cid, line)] = parse_label(value)
                    except ValueError as exc:
                        raise LabelFileError(where, None, f"honeypot {cid}: {exc}") from None
        return cls.from_records(records, gold)


def _read_csv_numbered(path: str | Path, columns: tuple[str, ...]):
    """Yield ``(line number, values)`` for the named columns, labels parsed to ±1."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - generator owns it
    except OSError as exc:
        raise LabelFileError(path, None, f"cannot open: {exc.strerror}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise LabelFileError(path, 1, f"not a CSV file: {exc}") from None
        if header is None or not any(h.strip() for h in header):
            raise LabelFileError(path, None, f"empty file (expected a header {','.join(columns)})")
        names = [h.strip().lower() for h in header]
        missing = [c for c in columns if c not in names]
        if missing:
            raise LabelFileError(
                path, 1, f"missing column {', '.join(missing)} (header must be {','.join(columns)})"
            )
        pos = [names.index(c) for c in columns]
        label_pos = columns.index("label")
        try:
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(names):
                    problem = f"expected {len(names)} fields, got {len(row)}"
                    raise LabelFileError(path, line, problem)
                values: list = [row[p].strip() for p in pos]
                for c, v in zip(columns, values, strict=True):
                    if not v:
                        raise LabelFileError(path, line, f"empty {c}")
                try:
                    values[label_pos] = parse_label(values[label_pos])
                except ValueError as exc:
                    raise LabelFileError(path, line, str(exc)) from None
                yield line, tuple(values)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise LabelFileError(path, reader.line_num, f"not a CSV file: {exc}") from None


def _read_csv(path: str | Path, columns: tuple[str, ...]):
    for _, values in _read_csv_numbered(path, columns):
        yield values
