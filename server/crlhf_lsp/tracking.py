"""Where the lines of accepted completions are now, through the user's later edits.

A rating names a line of a completion's text (``line`` 0 is its first line). Once the
completion is accepted, each of its lines is followed through every incremental
``didChange``: edits above it move it, edits inside it change its text, and a line that
was deleted (``deleted`` set, dropped) or rewritten beyond recognition (less than half of
it left, by ``difflib``'s ratio) is no longer offered for rating. A rewritten line is still
followed (its rewrite is the developer's correction, :mod:`crlhf_lsp.retention`) until
:meth:`Tracker.prune` lets it go; the ratio is computed when lines are asked for
(:meth:`Tracker.at`), not on every keystroke.

Each change replaces the range ``start..end`` with text holding ``k`` newlines. A tracked
line ``L``:

- above ``start.line``: untouched; below ``end.line``: moves by ``k - (end.line - start.line)``;
- ``start.line``: keeps its text before ``start`` (+ the first new line); it stays at
  ``start.line`` if that part is not blank, else its text after ``end`` (only if
  ``L == end.line``) carries it to ``start.line + k``; otherwise it is gone;
- strictly between ``start.line`` and ``end.line``: gone;
- ``end.line`` (``> start.line``): its text after ``end`` lands on ``start.line + k``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

MIN_SIMILARITY = 0.5


@dataclass
class TrackedLine:
    completion_id: str
    index: int
    """The line's index in the completion's text."""
    line: int
    """Its line in the document now."""
    original: str
    text: str
    deleted: bool = False
    """The line itself was removed (no longer followed)."""


@dataclass(frozen=True)
class Change:
    """One ``TextDocumentContentChangeEvent`` (``start``/``end`` as (line, character))."""

    text: str
    start: tuple[int, int] | None = None
    end: tuple[int, int] | None = None


def to_index(line: str, units: int, encoding: str = "utf-16") -> int:
    """The str index of ``units`` code units of ``encoding`` into ``line`` (clamped)."""
    if encoding == "utf-32":
        return min(units, len(line))
    size = (
        (lambda c: 2 if ord(c) > 0xFFFF else 1)
        if encoding == "utf-16"
        else (lambda c: len(c.encode("utf-8", "surrogatepass")))
    )
    count = 0
    for i, char in enumerate(line):
        if count >= units:
            return i
        count += size(char)
    return len(line)


class Tracker:
    """The tracked lines of every open document, keyed by URI."""

    def __init__(self) -> None:
        self.docs: dict[str, list[TrackedLine]] = {}

    def track(
        self, uri: str, completion_id: str, first_line: int, lines: list[str]
    ) -> list[TrackedLine]:
        """Follow ``lines`` (the document's text of the completion's lines) from now on;
        returns the lines followed (the non-blank ones)."""
        tracked = [
            TrackedLine(completion_id, i, first_line + i, text, text)
            for i, text in enumerate(lines)
            if text.strip()
        ]
        kept = [t for t in self.docs.get(uri, []) if t.line not in {n.line for n in tracked}]
        self.docs[uri] = kept + tracked
        return tracked

    def prune(self, completion_id: str) -> None:
        """Stop following ``completion_id``'s lines rewritten beyond recognition."""
        for uri, tracked in self.docs.items():
            self.docs[uri] = [t for t in tracked if _kept(t, completion_id)]

    def forget(self, uri: str) -> None:
        self.docs.pop(uri, None)

    def at(self, uri: str, first: int, last: int) -> list[TrackedLine]:
        """The tracked lines on document lines ``first..last`` (inclusive), in order."""
        found = [
            t
            for t in self.docs.get(uri, [])
            if first <= t.line <= last and _similar(t.original, t.text)
        ]
        return sorted(found, key=lambda t: t.line)

    def apply(self, uri: str, change: Change, document_lines: list[str], encoding: str) -> None:
        """Move ``uri``'s lines through ``change``; ``document_lines`` is the text after it
        (used only for whole-document replacements, which are matched by text)."""
        tracked = self.docs.get(uri)
        if not tracked:
            return
        if change.start is None or change.end is None:
            self.docs[uri] = _rematch(tracked, document_lines)
            return
        survivors = []
        for t in tracked:
            if _move(t, change, encoding):
                survivors.append(t)
            else:
                t.deleted = True
        self.docs[uri] = survivors


def _move(t: TrackedLine, change: Change, encoding: str) -> bool:
    assert change.start is not None and change.end is not None
    (sl, sc), (el, ec) = change.start, change.end
    new = change.text.split("\n")
    k = len(new) - 1
    if t.line < sl:
        return True
    if t.line > el:
        t.line += k - (el - sl)
        return True
    if sl < t.line < el:
        return False
    before = t.text[: to_index(t.text, sc, encoding)] if t.line == sl else ""
    after = t.text[to_index(t.text, ec, encoding) :] if t.line == el else ""
    if t.line == sl and (before.strip() or k == 0):
        t.text = before + new[0] + (after if k == 0 else "")
        return True
    if t.line == el and after.strip():
        t.line = sl + k
        t.text = new[-1] + after
        return True
    return False


def _kept(t: TrackedLine, pruned: str) -> bool:
    return t.completion_id != pruned or _similar(t.original, t.text)


def _similar(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() >= MIN_SIMILARITY


def _rematch(tracked: list[TrackedLine], lines: list[str]) -> list[TrackedLine]:
    """After a whole-document change: each line goes to the nearest line with its text."""
    survivors = []
    for t in tracked:
        candidates = [i for i, text in enumerate(lines) if text == t.text]
        if candidates:
            t.line = min(candidates, key=lambda i: abs(i - t.line))
            survivors.append(t)
        else:  # gone or edited: a whole-document change cannot tell which
            t.deleted = True
    return survivors
