"""What the label readers share: an item's name, a label's coding, dense ids for names.

An item is one line of one completion, named ``f"{completion_id}:{line}"`` (lines are
0-based): :func:`item_key` builds that name and :func:`split_item` takes it apart, and
nothing else does either.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LABEL_VALUES", "Names", "item_key", "parse_label", "split_item"]


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


LABEL_VALUES = {"1": 1, "+1": 1, "0": -1, "-1": -1}


def parse_label(value: object) -> int:
    """Map a label's coding to ±1: 1 is correct; 0 and -1 are wrong.

    >>> [parse_label(v) for v in (1, "0", "-1", True)]
    [1, -1, -1, 1]
    """
    if isinstance(value, bool):
        return 1 if value else -1
    if isinstance(value, int | np.integer) and int(value) in (1, 0, -1):
        return 1 if value == 1 else -1
    if isinstance(value, str) and value.strip() in LABEL_VALUES:
        return LABEL_VALUES[value.strip()]
    raise ValueError(f"unknown label {value!r} (use 1 for correct, 0 or -1 for wrong)")


class Names:
    """Names -> dense ids in order of first appearance, a batch of names at a time."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def index(self, names: Sequence[str]) -> np.ndarray:
        """The ids of ``names`` (new ones appended), as an int32 lookup table."""
        ids = self.ids
        return np.fromiter(
            (ids.setdefault(name, len(ids)) for name in names), dtype=np.int32, count=len(names)
        )
