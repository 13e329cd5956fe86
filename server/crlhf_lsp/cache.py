"""Suggestions kept by the text around the cursor: a position seen before is answered
without the model, and so is a keystroke that types the start of a kept suggestion.

The key is the tail of the prefix and the head of the suffix (:data:`PREFIX_CHARS`,
:data:`SUFFIX_CHARS`) plus what else changes the model's output (the model, the adapter
version, ``maxTokens``, ``temperature``): a hit may come from a moment when the document
differed farther away, as in llama.vim's cache, since what the cursor is next to decides
the suggestion. Sampled suggestions (``temperature`` > 0) are kept too: showing the same
sample again at the same place is what a user expects from ghost text.

Typing through: a miss looks up the prefix without its last 1…:data:`MAX_TYPED`
characters (on the cursor's line); a suggestion kept there that starts with those
characters answers with its remainder.

Bounded (least recently used first out, :data:`CAPACITY` entries) and cleared when the
adapter or the model changes: the key's version would miss anyway, the memory is freed.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crlhf_lsp.completion import CompletionRecord, Cursor

__all__ = ["CAPACITY", "MAX_TYPED", "PREFIX_CHARS", "SUFFIX_CHARS", "SuggestionCache"]

PREFIX_CHARS = 2048
"""Characters before the cursor in the key: about 500-700 tokens of code, the part of the
prompt that decides a suggestion (the rest of the 1,536-token budget rarely changes it)."""
SUFFIX_CHARS = 256
"""Characters after the cursor in the key (the FIM suffix's head; the line's rest included)."""
CAPACITY = 256
"""Suggestions kept: a few KB each, so well under a megabyte of keys and texts."""
MAX_TYPED = 64
"""Most characters typed through a kept suggestion that are looked back over on a miss."""

Key = tuple[str, str, Hashable]


class SuggestionCache:
    """Suggestions by ``(prefix tail, suffix head, context)``; ``context`` is whatever
    else changes the output (see :meth:`CrlhfServer.cache_context`)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Key, CompletionRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, cursor: Cursor, context: Hashable, record: CompletionRecord) -> None:
        key = _key(cursor.prefix, cursor.suffix, context)
        self._entries[key] = record
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def get(self, cursor: Cursor, context: Hashable) -> tuple[CompletionRecord, str] | None:
        """The kept suggestion for ``cursor`` and the text to show (all of it at a position
        seen before, the rest of it after typing its start), relocated to where it was
        made in today's document; None on a miss."""
        record = self._lookup(_key(cursor.prefix, cursor.suffix, context))
        if record is not None:
            return _relocated(record, cursor, 0), record.text
        tail = cursor.prefix[-(PREFIX_CHARS + MAX_TYPED) :]  # not the whole prefix per try
        for n in range(1, min(MAX_TYPED, len(cursor.line_prefix)) + 1):
            typed = cursor.line_prefix[-n:]
            record = self._lookup(_key(tail[:-n], cursor.suffix, context))
            if record is not None and len(record.text) > n and record.text.startswith(typed):
                return _relocated(record, cursor, n), record.text[n:]
        return None

    def clear(self) -> None:
        self._entries.clear()

    def _lookup(self, key: Key) -> CompletionRecord | None:
        record = self._entries.get(key)
        if record is not None:
            self._entries.move_to_end(key)
        return record


def _key(prefix: str, suffix: str, context: Hashable) -> Key:
    return prefix[-PREFIX_CHARS:], suffix[:SUFFIX_CHARS], context


def _relocated(record: CompletionRecord, cursor: Cursor, typed: int) -> CompletionRecord:
    """``record`` as if made where the user started typing it in today's document (the
    same completion, same id): following its lines after an accept reads these fields."""
    line_prefix = cursor.line_prefix[: len(cursor.line_prefix) - typed]
    where = (cursor.uri, cursor.line, line_prefix, cursor.line_suffix, cursor.around)
    if (record.uri, record.line, record.line_prefix, record.line_suffix, record.around) == where:
        return record
    return dataclasses.replace(
        record,
        uri=cursor.uri,
        line=cursor.line,
        line_prefix=line_prefix,
        line_suffix=cursor.line_suffix,
        around=cursor.around,
    )
