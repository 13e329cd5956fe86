"""The ``crlhf-train aggregate`` CSV files: the labels file read column by column, and
the row reader that reads anything else and names the line of each problem.

The labels file has the header ``item,annotator,label`` (any order, other columns
ignored), the gold file ``item,label``; labels are 1 (correct), 0 or -1 (wrong).  pyarrow's
CSV reader reads the labels where it is installed (the ``train`` extra), with no Python
step per label; what it cannot vouch for is read again row by row.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import LabelFileError
from .items import LABEL_VALUES, Names, parse_label

__all__ = ["LABEL_COLUMNS", "read_csv", "read_gold", "read_labels_columnar", "release_freed_memory"]


LABEL_COLUMNS = ("item", "annotator", "label")
_BLOCK_SIZE = 1 << 20  # bytes pyarrow parses at a time


def read_labels_columnar(path: str | Path, also: Sequence[str] = ()) -> tuple | None:
    """The labels file through pyarrow's CSV reader (C++), a block of rows at a time.

    ``(items, annotators, item_idx, annotator_idx, label, also_index)`` exactly as the row
    reader and :meth:`LabelSet.from_records` would make them, but for the pairs rated twice
    (left to :meth:`LabelSet._from_columns`); ``also_index`` maps those of the names
    ``also`` (the honeypots) that are items to their index, numbered with the items
    (None where stripping changed a name: look them up in ``items``).  None where it cannot vouch
    for that: pyarrow is not installed, or the file holds something the row reader turns
    into an error (a bad label, an empty or oversized field, a row of the wrong length, bad
    UTF-8) or reads its own way (a line of spaces, a header over several lines).  Header
    errors are raised here, as the row reader raises them.

    Each block comes as dictionary columns: a block's distinct values and an int32 index
    per row.  Only the indices are kept (the labels as ±1 already); the blocks' item
    dictionaries become one at the end (:func:`_number_items`, in C++).  1M labels: about
    9 MB kept, not a Python object per row.
    """
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - the train extra installs it
        return None
    columns = _header_fields(path)
    if columns is None:
        return None
    # the system allocator: what the reader frees, numpy (the fit) can use again
    pool = pa.system_memory_pool()
    try:
        with pa.OSFile(str(path), memory_pool=pool) as source:
            blocks = _open_blocks(source, *columns, pool)
            read = _read_blocks(blocks)
            del blocks
        if read is None:
            return None  # the row reader names the line of the unknown label
        item_chunks, annotator_names, annotator_parts, label_parts = read
        del read
        if not item_chunks:
            empty = np.empty(0, dtype=np.int32)
            return [], [], empty, empty, empty.astype(np.int8), None
        item_names, item_idx, index, plain = _number_items(item_chunks, list(also), pool)
        del item_chunks
    except (pa.ArrowException, OSError, ValueError):
        return None
    item = (item_names, item_idx) if plain else _stripped(item_names, item_idx)
    annotator = _stripped(annotator_names, np.concatenate(annotator_parts))
    if item is None or annotator is None:
        return None
    if item[0] is not item_names:
        index = None  # stripping merged names: the numbering's dict is stale
    return item[0], annotator[0], item[1], annotator[1], np.concatenate(label_parts), index


def _header_fields(path: str | Path) -> tuple[list[str], list[str]] | None:
    """(pyarrow's names for all columns, those of item, annotator and label); None for a
    header over several lines.  Header errors are raised, as the row reader raises them."""
    with _open_csv(path) as f:
        reader = csv.reader(f)
        names, pos = _read_header(reader, path, LABEL_COLUMNS)
        if reader.line_num != 1:
            return None
    fields = [f"f{k}" for k in range(len(names))]
    return fields, [fields[p] for p in pos]


def _open_blocks(source, fields: list[str], wanted: list[str], pool):
    """pyarrow's streaming CSV reader: the wanted columns as dictionary arrays, per block."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    names_type = pa.dictionary(pa.int32(), pa.string())
    return pa_csv.open_csv(
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


def _read_blocks(blocks) -> tuple | None:
    """Per block: the item dictionary and indices, the annotator ids, the labels as ±1.

    ``(item_chunks, annotator names, annotator_parts, label_parts)``; None at a label
    spelling that is not one (the row reader names its line).
    """
    item_chunks, annotator_parts, label_parts = [], [], []
    annotators, values = Names(), Names()
    codes = np.empty(0, dtype=np.int8)  # label value id -> ±1
    for block in blocks:
        item, annotator, value = block.columns
        item_chunks.append(item)  # its own buffers only: the block's others go
        annotator_ids = annotators.index(annotator.dictionary.to_pylist())
        annotator_parts.append(annotator_ids[_int32s(annotator.indices)])
        value_ids = values.index(value.dictionary.to_pylist())
        if len(values.ids) > codes.size:  # new spellings of a label: map them once
            new = [LABEL_VALUES.get(v.strip()) for v in list(values.ids)[codes.size :]]
            if None in new:
                return None
            codes = np.concatenate([codes, np.array(new, dtype=np.int8)])
        label_parts.append(codes[value_ids[_int32s(value.indices)]])
    return item_chunks, list(annotators.ids), annotator_parts, label_parts


def _number_items(chunks: list, also: list[str], pool) -> tuple:
    """``(item names, item index per row, also name -> index, plain)`` across the blocks;
    ``plain``: no name needs the row reader's strip or length check (:func:`_plain`).

    pyarrow unifies the blocks' dictionaries in C++ (no pyarrow.compute, ~50 ms CPU to
    import): the items in order of first appearance, each block's indices mapped onto
    them.  The names ``also`` ride along as one more block, so the honeypots' indices
    come out of the same hash pass; being last, those nobody labelled number after every
    item, and are cut off.
    """
    import pyarrow as pa

    plain = all(_plain(chunk.dictionary) for chunk in chunks)
    if also:
        extra = pa.DictionaryArray.from_arrays(_arrow_ints(np.arange(len(also))), _strings(also))
        chunks = [*chunks, extra]
    unified = pa.chunked_array(chunks).unify_dictionaries(pool)
    del chunks
    parts = [_int32s(chunk.indices) for chunk in unified.chunks]
    also_idx = parts.pop() if also else np.empty(0, dtype=np.int32)
    item_idx = np.concatenate(parts)
    del parts
    n_items = int(item_idx.max()) + 1  # first appearance: the items come first
    names = unified.chunk(0).dictionary.slice(0, n_items).to_pylist()
    index = {name: int(i) for name, i in zip(also, also_idx.tolist(), strict=True) if i < n_items}
    return names, item_idx, index, plain


def _arrow_ints(values: np.ndarray):
    """An int32 pyarrow array over ``values`` (pa.array would import pandas to check)."""
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), values.size, [None, pa.py_buffer(values)])


def _strings(names: list[str]):
    """A pyarrow string array of ``names``, built from its buffers (as :func:`_arrow_ints`)."""
    import pyarrow as pa

    encoded = [name.encode("utf-8") for name in names]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int32, count=len(encoded)), out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


def _plain(strings) -> bool:
    """True when no value of a pyarrow string array is empty, over csv's field size limit,
    or could change under ``str.strip()``: its first and last bytes are printable ASCII.

    (A byte over 0x7f may belong to Unicode whitespace, U+00A0 or U+3000: those, and
    anything else in doubt, are left to :func:`_stripped`.)  One look at the buffers.
    """
    if len(strings) == 0:
        return True
    offsets = np.frombuffer(
        strings.buffers()[1], dtype=np.int32, count=len(strings) + 1, offset=strings.offset * 4
    )
    lengths = np.diff(offsets)
    if lengths.min() < 1 or lengths.max() > csv.field_size_limit():
        return False  # bytes >= characters: under the limit in bytes is under it
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)
    ends = np.concatenate([data[offsets[:-1]], data[offsets[1:] - 1]])
    return bool(np.all((ends > 0x20) & (ends < 0x7F)))


def release_freed_memory() -> None:
    """Hand the heap pages freed by reading back to the system (glibc's ``malloc_trim``).

    Reading 1M labels frees ~20 MB of blocks and temporaries in pieces that glibc keeps
    (its mmap threshold rises with each large free), so without this the whole
    ``crlhf-train aggregate`` process peaks ~20 MB higher (bench/aggregate.py --process).
    One call, once the LabelSet is built (:meth:`LabelSet.from_csv`): a call costs ~10 ms
    CPU on that heap, and a second one, straight after reading, lowered no peak.
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
    merged = Names()  # " a" and "a" are one name once stripped
    lookup = merged.index(stripped)
    return list(merged.ids), lookup[idx]


def read_gold(path: str | Path | None) -> dict[str, int]:
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
                # a stripped str: the table answers, parse_label only words the error
                label = LABEL_VALUES.get(values[label_pos])
                if label is None:
                    try:
                        parse_label(values[label_pos])
                    except ValueError as exc:
                        raise LabelFileError(path, line, str(exc)) from None
                values[label_pos] = label
                yield line, tuple(values)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise LabelFileError(path, reader.line_num, f"not a CSV file: {exc}") from None


def read_csv(path: str | Path, columns: tuple[str, ...]):
    for _, values in _read_csv_numbered(path, columns):
        yield values
