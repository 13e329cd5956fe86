"""Line ratings as a compact columnar label set.

A :class:`LabelSet` holds one row per (item, annotator) pair in three parallel numpy
arrays: the item index, the annotator index and the label (+1 correct, -1 wrong).
Honeypot items carry their known truth in ``gold``.  For store data an item is one line
of one completion, named ``f"{completion_id}:{line}"`` (lines are 0-based).

Three ways in: :meth:`LabelSet.from_records` (Python tuples), :meth:`LabelSet.from_csv`
(the ``crlhf-train aggregate`` CSV contract) and :meth:`LabelSet.from_export` (pages of the
store's ``GET /v1/labels/export``).  When an annotator rated the same item twice, the last
label read counts: the store exports labels oldest first, so the newest wins.

The CSV and the export are read column by column, with no Python step per label: pyarrow's
CSV reader where it is installed (the ``train`` extra), and ``map``/``numpy`` over the
export's rows.  Anything the fast path cannot vouch for (a bad label, a short row, a blank
line of spaces, no pyarrow) is read again row by row, which names the line of a problem.
The readers are :mod:`.label_csv` and :mod:`.label_export`; an item's name and a label's
coding are :mod:`.items`' (``item_key``, ``split_item`` and ``parse_label`` are here too).

>>> ls = LabelSet.from_records([("a", "ann1", 1), ("a", "ann2", -1), ("b", "ann1", 0)],
...                            gold={"b": -1})
>>> ls.items, ls.annotators, ls.label.tolist(), ls.gold
(['a', 'b'], ['ann1', 'ann2'], [1, -1, -1], {1: -1})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import label_csv, label_export
from .errors import LabelFileError
from .items import Names, item_key, parse_label, split_item

__all__ = ["LabelSet", "item_key", "parse_label", "split_item"]


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
        naming the file, the line and the problem (the labels' first, then the gold's).
        """
        try:  # first, so the honeypots are numbered with the items; its errors wait
            gold, gold_error = label_csv.read_gold(gold_path), None
        except LabelFileError as exc:
            gold, gold_error = {}, exc
        columns = label_csv.read_labels_columnar(labels_path, list(gold))
        if columns is None:  # no pyarrow, or something only the row reader can name
            records = list(label_csv.read_csv(labels_path, label_csv.LABEL_COLUMNS))
            if not records:
                raise LabelFileError(labels_path, None, "no labels (only a header)")
            if gold_error is not None:
                raise gold_error
            return cls.from_records(records, gold)
        items, annotators, item_idx, annotator_idx, label, gold_index = columns
        if not label.size:
            raise LabelFileError(labels_path, None, "no labels (only a header)")
        if gold_error is not None:
            raise gold_error
        labels = cls._from_columns(
            items, annotators, item_idx, annotator_idx, label, gold, gold_index
        )
        label_csv.release_freed_memory()
        return labels

    @classmethod
    def from_export(cls, pages: Iterable[dict]) -> LabelSet:
        """Build from pages of the store's ``GET /v1/labels/export`` JSON.

        Each page is ``{"labels": [{"completion_id", "line", "annotator", "label", ...}],
        "honeypots": {"<completion_id>": [1, -1, ...]}, "next": ...}``.  Labels arrive
        oldest first, so an annotator's newest label on a line counts.  A label the store
        marks ``own`` (the author rating their own completion) is no crowd vote and is
        left out, as is one it marks ``superseded``.
        """
        items, annotators = Names(), Names()
        item_parts: list[np.ndarray] = []
        annotator_parts: list[np.ndarray] = []
        label_parts: list[np.ndarray] = []
        gold: dict[str, int] = {}
        for n, page in enumerate(pages, start=1):
            where = f"export page {n}"
            if not isinstance(page, Mapping) or "labels" not in page:
                raise LabelFileError(where, None, "not a label export page (no 'labels')")
            rows = page["labels"]
            page_columns = (
                label_export.export_columns(rows) if isinstance(rows, list | tuple) else None
            )
            if page_columns is None:  # something unusual: the row loop names the row
                page_columns = label_export.export_rows(rows, where)
            page_items, page_item_idx, page_annotators, page_annotator_idx, page_label = (
                page_columns
            )
            item_parts.append(items.index(page_items)[page_item_idx])
            annotator_parts.append(annotators.index(page_annotators)[page_annotator_idx])
            label_parts.append(page_label)
            for cid, truths in (page.get("honeypots") or {}).items():
                for line, value in enumerate(truths):
                    try:
                        gold[item_key(cid, line)] = parse_label(value)
                    except ValueError as exc:
                        raise LabelFileError(where, None, f"honeypot {cid}: {exc}") from None
        return cls._from_columns(
            list(items.ids),
            list(annotators.ids),
            _concat(item_parts, np.int32),
            _concat(annotator_parts, np.int32),
            _concat(label_parts, np.int8),
            gold,
        )

    @classmethod
    def _from_columns(
        cls,
        items: list[str],
        annotators: list[str],
        item_idx: np.ndarray,
        annotator_idx: np.ndarray,
        label: np.ndarray,
        gold: Mapping[str, int],
        item_index: Mapping[str, int] | None = None,
    ) -> LabelSet:
        """Columns read in order -> a LabelSet as :meth:`from_records` builds it.

        One label per (item, annotator) pair, the last read, at the place of the pair's
        first; ``gold`` (item name -> ±1) keeps the items someone labelled.  ``item_index``
        (name -> index in ``items`` of every labelled gold name), where the reader has it,
        spares a pass over the items.
        """
        item_idx, annotator_idx, label = _last_label_per_pair(
            item_idx, annotator_idx, label, len(items), len(annotators)
        )
        gold_idx: dict[int, int] = {}
        if gold:
            where = item_index
            if where is None:
                where = {name: i for i, name in enumerate(items) if name in gold}
            gold_idx = {where[name]: truth for name, truth in gold.items() if name in where}
        return cls(items, annotators, item_idx, annotator_idx, label, gold_idx)


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)


def _last_label_per_pair(
    item_idx: np.ndarray,
    annotator_idx: np.ndarray,
    label: np.ndarray,
    n_items: int,
    n_annotators: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep one label per (item, annotator): the last one, at the place of the first.

    The common case (no pair twice) costs one pass setting a bit per pair (1M labels of
    250k items by 50 annotators: a 1.5 MB bit table, a few ms); only label sets with a
    repeated pair, or too many possible pairs for the table, pay for a stable sort.
    """
    item_idx = np.ascontiguousarray(item_idx, dtype=np.int32)
    annotator_idx = np.ascontiguousarray(annotator_idx, dtype=np.int32)
    label = np.ascontiguousarray(label, dtype=np.int8)
    n = label.shape[0]
    if n < 2 or _no_pair_twice(item_idx, annotator_idx, n_items, n_annotators):
        return item_idx, annotator_idx, label
    key = item_idx.astype(np.int64)
    key *= max(n_annotators, 1)
    key += annotator_idx
    order = np.argsort(key, kind="stable")  # a pair's rows stay in the order read
    key = key[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    del key
    first = order[starts]
    last = order[np.append(starts[1:], n) - 1]
    by_first = np.argsort(first)
    first, last = first[by_first], last[by_first]
    return item_idx[first], annotator_idx[first], label[last]


def _no_pair_twice(
    item_idx: np.ndarray, annotator_idx: np.ndarray, n_items: int, n_annotators: int
) -> bool | None:
    """True when every (item, annotator) pair occurs once; None when the table is too big."""
    cells = n_items * n_annotators
    if cells > _PAIR_BITS_MAX:
        return None
    bits = np.zeros((cells + 7) // 8, dtype=np.uint8)
    for start in range(0, item_idx.shape[0], _CHUNK):  # small temporaries: no heap growth
        key = item_idx[start : start + _CHUNK].astype(np.int64)
        key *= n_annotators
        key += annotator_idx[start : start + _CHUNK]
        np.bitwise_or.at(bits, key >> 3, np.left_shift(1, key & 7).astype(np.uint8))
    return int(_POPCOUNT[bits].sum(dtype=np.int64)) == item_idx.shape[0]


_PAIR_BITS_MAX = 1 << 28  # a 32 MB bit table at most; beyond it, sort
_CHUNK = 1 << 16
_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)
