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

>>> ls = LabelSet.from_records([("a", "ann1", 1), ("a", "ann2", -1), ("b", "ann1", 0)],
...                            gold={"b": -1})
>>> ls.items, ls.annotators, ls.label.tolist(), ls.gold
(['a', 'b'], ['ann1', 'ann2'], [1, -1, -1], {1: -1})
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter, methodcaller
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
        columns = _read_labels_columnar(labels_path)
        if columns is None:  # no pyarrow, or something only the row reader can name
            records = list(_read_csv(labels_path, ("item", "annotator", "label")))
            if not records:
                raise LabelFileError(labels_path, None, "no labels (only a header)")
            return cls.from_records(records, _read_gold(gold_path))
        items, annotators, item_idx, annotator_idx, label = columns
        if not label.size:
            raise LabelFileError(labels_path, None, "no labels (only a header)")
        gold = _read_gold(gold_path)
        labels = cls._from_columns(items, annotators, item_idx, annotator_idx, label, gold)
        _release_freed_memory()
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
        items, annotators = _Names(), _Names()
        item_parts: list[np.ndarray] = []
        annotator_parts: list[np.ndarray] = []
        label_parts: list[np.ndarray] = []
        gold: dict[str, int] = {}
        for n, page in enumerate(pages, start=1):
            where = f"export page {n}"
            if not isinstance(page, Mapping) or "labels" not in page:
                raise LabelFileError(where, None, "not a label export page (no 'labels')")
            rows = page["labels"]
            page_columns = _export_columns(rows) if isinstance(rows, list | tuple) else None
            if page_columns is None:  # something unusual: the row loop names the row
                page_columns = _export_rows(rows, where)
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
    ) -> LabelSet:
        """Columns read in order -> a LabelSet as :meth:`from_records` builds it.

        One label per (item, annotator) pair, the last read, at the place of the pair's
        first; ``gold`` (item name -> ±1) keeps the items someone labelled.
        """
        item_idx, annotator_idx, label = _last_label_per_pair(
            item_idx, annotator_idx, label, len(items), len(annotators)
        )
        gold_idx: dict[int, int] = {}
        if gold:
            where = {name: i for i, name in enumerate(items) if name in gold}
            gold_idx = {where[name]: truth for name, truth in gold.items() if name in where}
        return cls(items, annotators, item_idx, annotator_idx, label, gold_idx)


class _Names:
    """Names -> dense ids in order of first appearance, a batch of names at a time."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def index(self, names: Sequence[str]) -> np.ndarray:
        """The ids of ``names`` (new ones appended), as an int32 lookup table."""
        ids = self.ids
        return np.fromiter(
            (ids.setdefault(name, len(ids)) for name in names), dtype=np.int32, count=len(names)
        )


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


# ---------------------------------------------------------------- the store's export
def _export_columns(rows: Sequence) -> tuple | None:
    """One export page's label rows as columns, with no Python step per row.

    ``(item names, item index per row, annotator names, annotator index per row, label)``,
    names local to the page.  None where the rows are anything but plain: then the row loop
    (:func:`_export_rows`) reads them, and names the row of any problem.
    """
    try:
        if set(map(type, rows)) - {dict}:
            return None
        own = list(map(methodcaller("get", "own"), rows))
        superseded = list(map(methodcaller("get", "superseded"), rows))
        if any(own) or any(superseded):
            n = len(rows)
            keep = ~(
                np.fromiter(map(bool, own), dtype=bool, count=n)
                | np.fromiter(map(bool, superseded), dtype=bool, count=n)
            )
            rows = list(compress(rows, keep.tolist()))
        n = len(rows)
        cids = list(map(itemgetter("completion_id"), rows))
        lines = list(map(itemgetter("line"), rows))
        names = list(map(itemgetter("annotator"), rows))
        values = list(map(itemgetter("label"), rows))
        if n and (
            set(map(type, cids)) - {str, int, uuid.UUID}
            or set(map(type, lines)) != {int}
            or set(map(type, names)) != {str}
            or set(map(type, values)) - {int, bool}
        ):
            return None
        line = np.fromiter(lines, dtype=np.int64, count=n)
        value = np.fromiter(values, dtype=np.int64, count=n)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    if n and (line.min() < 0 or line.max() >= 1 << 31):
        return None
    if not np.all((value == 1) | (value == 0) | (value == -1)):
        return None
    label = np.where(value == 1, 1, -1).astype(np.int8)
    # an item is (completion, line): number the completions, then key = cid * span + line
    completions = {cid: k for k, cid in enumerate(dict.fromkeys(cids))}
    cid_idx = np.fromiter(map(completions.__getitem__, cids), dtype=np.int64, count=n)
    span = int(line.max()) + 1 if n else 1
    key = cid_idx * span + line
    unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    by_first = np.argsort(first)  # items in order of first appearance
    rank = np.empty(by_first.size, dtype=np.int32)
    rank[by_first] = np.arange(by_first.size, dtype=np.int32)
    cid_names = list(completions)
    item_names = [f"{cid_names[k // span]}:{k % span}" for k in unique[by_first].tolist()]
    annotators = {name: k for k, name in enumerate(dict.fromkeys(names))}
    annotator_idx = np.fromiter(map(annotators.__getitem__, names), dtype=np.int32, count=n)
    return item_names, rank[inverse.reshape(-1)], list(annotators), annotator_idx, label


def _export_rows(rows: Iterable, where: str) -> tuple:
    """:func:`_export_columns`' result, one row at a time (the row of a problem named)."""
    items: dict[str, int] = {}
    annotators: dict[str, int] = {}
    item_idx: list[int] = []
    annotator_idx: list[int] = []
    label: list[int] = []
    for k, row in enumerate(rows, start=1):
        if isinstance(row, Mapping) and (row.get("own") or row.get("superseded")):
            continue
        try:
            item = item_key(row["completion_id"], row["line"])
            annotator = str(row["annotator"])
            y = parse_label(row["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelFileError(where, k, f"bad label row: {exc}") from None
        item_idx.append(items.setdefault(item, len(items)))
        annotator_idx.append(annotators.setdefault(annotator, len(annotators)))
        label.append(y)
    return (
        list(items),
        np.array(item_idx, dtype=np.int32),
        list(annotators),
        np.array(annotator_idx, dtype=np.int32),
        np.array(label, dtype=np.int8),
    )


# ---------------------------------------------------------------- CSV files
_LABEL_COLUMNS = ("item", "annotator", "label")


def _read_labels_columnar(path: str | Path) -> tuple | None:
    """The labels file through pyarrow's CSV reader (C++), a block of rows at a time.

    ``(items, annotators, item_idx, annotator_idx, label)`` exactly as the row reader and
    :meth:`LabelSet.from_records` would make them, but for the pairs rated twice (left to
    :meth:`LabelSet._from_columns`).  None where it cannot vouch for that: pyarrow is not
    installed, or the file holds something the row reader turns into an error (a bad label,
    an empty or oversized field, a row of the wrong length, bad UTF-8) or reads its own way
    (a line of spaces, a header over several lines).  Header errors are raised here, as the
    row reader raises them.

    Each block comes as dictionary columns: a block's distinct values and an int32 index
    per row.  Only the indices are kept (the labels as ±1 already); the blocks' item
    dictionaries become one at the end, in C++.  1M labels: about 9 MB kept, not a Python
    object per row.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyarrow import csv as pa_csv
    except ImportError:  # pragma: no cover - the train extra installs it
        return None
    with _open_csv(path) as f:
        reader = csv.reader(f)
        names, pos = _read_header(reader, path, _LABEL_COLUMNS)
        if reader.line_num != 1:
            return None
    fields = [f"f{k}" for k in range(len(names))]
    wanted = [fields[p] for p in pos]
    names_type = pa.dictionary(pa.int32(), pa.string())
    # the system allocator: what the reader frees, numpy (the fit) can use again
    pool = pa.system_memory_pool()
    item_dicts, item_parts, annotator_parts, label_parts = [], [], [], []
    annotators, values = _Names(), _Names()
    codes = np.empty(0, dtype=np.int8)  # label value id -> ±1
    try:
        with pa.OSFile(str(path), memory_pool=pool) as source:
            blocks = pa_csv.open_csv(
                source,
                read_options=pa_csv.ReadOptions(
                    skip_rows=1, column_names=fields, use_threads=False, block_size=_BLOCK_SIZE
                ),
                parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(wanted, names_type),
                    include_columns=wanted,
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
                memory_pool=pool,
            )
            for block in blocks:
                item, annotator, value = block.columns
                item_dicts.append(item.dictionary)
                item_parts.append(_int32s(item.indices).copy())
                annotator_ids = annotators.index(annotator.dictionary.to_pylist())
                annotator_parts.append(annotator_ids[_int32s(annotator.indices)])
                value_ids = values.index(value.dictionary.to_pylist())
                if len(values.ids) > codes.size:  # new spellings of a label: map them once
                    new = [_LABEL_VALUES.get(v.strip()) for v in list(values.ids)[codes.size :]]
                    if None in new:
                        return None  # the row reader names the line of the unknown label
                    codes = np.concatenate([codes, np.array(new, dtype=np.int8)])
                label_parts.append(codes[value_ids[_int32s(value.indices)]])
            del blocks
        if not item_parts:
            empty = np.empty(0, dtype=np.int32)
            return [], [], empty, empty, empty.astype(np.int8)
        # the blocks' item dictionaries, one after the other, are the items in order of
        # first appearance with repeats: one hash pass in C++ numbers them
        everything = pa.concat_arrays(item_dicts, memory_pool=pool)
        encoded = pc.dictionary_encode(everything, memory_pool=pool)
        block_ids = _int32s(encoded.indices)
        item_idx = np.empty(sum(p.size for p in item_parts), dtype=np.int32)
        at = start = 0
        for part, size in zip(item_parts, map(len, item_dicts), strict=True):
            np.take(block_ids[start : start + size], part, out=item_idx[at : at + part.size])
            at += part.size
            start += size
        item_names = encoded.dictionary.to_pylist()
        del everything, item_dicts, encoded, block_ids, item_parts
    except (pa.ArrowException, OSError, ValueError):
        return None
    _release_freed_memory()  # the reader's blocks: freed, but glibc keeps the pages
    item = _stripped(item_names, item_idx)
    annotator = _stripped(list(annotators.ids), np.concatenate(annotator_parts))
    if item is None or annotator is None:
        return None
    return item[0], annotator[0], item[1], annotator[1], np.concatenate(label_parts)


_BLOCK_SIZE = 1 << 20  # bytes pyarrow parses at a time


def _release_freed_memory() -> None:
    """Hand the heap pages freed by reading back to the system (glibc's ``malloc_trim``).

    Reading 1M labels frees ~20 MB of blocks and temporaries in pieces that glibc keeps
    (its mmap threshold rises with each large free), so without this the whole
    ``crlhf-train aggregate`` process peaks ~20 MB higher (bench/aggregate.py --process).
    Elsewhere (musl, macOS, Windows) nothing happens.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def _int32s(indices) -> np.ndarray:
    """An int32 pyarrow array without nulls as a numpy view (no pandas import)."""
    if len(indices) == 0:
        return np.empty(0, dtype=np.int32)
    return np.frombuffer(
        indices.buffers()[1], dtype=np.int32, count=len(indices), offset=indices.offset * 4
    )


def _stripped(names: list[str], idx: np.ndarray) -> tuple[list[str], np.ndarray] | None:
    """Distinct raw values -> the row reader's values (stripped), and the rows' ids again.

    None where a value is empty or longer than :mod:`csv` reads (the row reader's errors).
    """
    limit = csv.field_size_limit()
    if any(len(name) > limit for name in names):
        return None
    stripped = [name.strip() for name in names]
    if "" in stripped:
        return None
    if stripped == names:
        return names, idx
    merged = _Names()  # " a" and "a" are one name once stripped
    lookup = merged.index(stripped)
    return list(merged.ids), lookup[idx]


def _read_gold(path: str | Path | None) -> dict[str, int]:
    """The gold file: item -> truth ±1 (a small file, read row by row)."""
    gold: dict[str, int] = {}
    if path is not None:
        for line, (item, value) in _read_csv_numbered(path, ("item", "label")):
            if item in gold and gold[item] != value:
                raise LabelFileError(path, line, f"item {item!r} has two different truths")
            gold[item] = value
    return gold


def _open_csv(path: str | Path):
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise LabelFileError(path, None, f"cannot open: {exc.strerror}") from None


def _read_header(reader, path: str | Path, columns: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """The header's (stripped, lower-case) names and the named columns' positions."""
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
    return names, [names.index(c) for c in columns]


def _read_csv_numbered(path: str | Path, columns: tuple[str, ...]):
    """Yield ``(line number, values)`` for the named columns, labels parsed to ±1."""
    f = _open_csv(path)
    with f:
        reader = csv.reader(f)
        names, pos = _read_header(reader, path, columns)
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
