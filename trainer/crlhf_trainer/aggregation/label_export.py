"""Pages of the store's ``GET /v1/labels/export`` as label columns.

Plain pages are read column by column (``map`` and numpy, no Python step per row); anything
else row by row, which names the row of a problem.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from itertools import compress
from operator import itemgetter, methodcaller

import numpy as np

from .errors import LabelFileError
from .items import item_key, parse_label

__all__ = ["export_columns", "export_rows"]


def export_columns(rows: Sequence) -> tuple | None:
    """One export page's label rows as columns, with no Python step per row.

    ``(item names, item index per row, annotator names, annotator index per row, label)``,
    names local to the page.  None where the rows are anything but plain: then the row loop
    (:func:`export_rows`) reads them, and names the row of any problem.
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


def export_rows(rows: Iterable, where: str) -> tuple:
    """:func:`export_columns`' result, one row at a time (the row of a problem named)."""
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
