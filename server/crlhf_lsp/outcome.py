"""What became of each suggestion once it left the screen: partly taken, or dismissed.

VS Code's stable API tells an extension neither that ghost text was dismissed nor that it
was accepted word by word or line by line (``handleDidPartiallyAcceptCompletionItem`` and
``handleEndOfLifetime`` are proposed APIs, closed to a published extension), and Neovim
clients differ. Every client asks for ghost text again after an edit, though, and the
server holds the document: so the server reads the outcome off the document, the same way
for every editor, when a suggestion leaves the screen (another takes its place, or its
document closes):

- **accepted**: the client ran ``crlhf.accepted``; said then, nothing more here.
- **partial**: the document now holds the suggestion's first ``k`` characters where it was
  offered, ``k`` short of the whole and ending at a word boundary, ``k ≥ 2``: typed by
  hand or taken with ``acceptNextWord``/``acceptNextLine``, the developer wrote what the
  model proposed, then went another way. A ``partial`` event with ``accepted_chars = k``:
  feedback follows those lines like an accept (retention), and the store sees the rest as
  the rejected tail.
- **dismissed**: none of it was taken: a ``dismissed`` event.
- **unknown**: the text before the suggestion changed (an edit above it), or the document
  is gone: nothing is said rather than a guess.

A suggestion found whole in the document is left to ``crlhf.accepted``: after a full
accept the client may ask for the next ghost text before it runs the command.
A client that sends ``crlhf/didPartiallyAcceptCompletion`` itself has said it: the
suggestion is not reported twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from os.path import commonprefix
from typing import Literal

from pygls.workspace import TextDocument

from crlhf_lsp.completion import CompletionRecord

__all__ = ["MIN_PARTIAL", "Outcomes", "Tally", "taken_chars"]

MIN_PARTIAL = 2
"""Fewest characters of a suggestion the document must hold to count as partly taken."""

Outcome = Literal["partial", "dismissed"]
_WORD = re.compile(r"\w")


def taken_chars(record: CompletionRecord, doc: TextDocument | None) -> int | None:
    """How many leading characters of ``record.text`` the document holds where the
    suggestion was offered, cut back to a word boundary; None when that cannot be told
    (the document is gone or changed before the suggestion's position)."""
    if doc is None:
        return None
    lines = doc.lines
    head, _ = record.around
    if record.line >= len(lines) or not lines[record.line].startswith(record.line_prefix):
        return None
    if len(head) != sum(map(len, lines[: record.line])) or "".join(lines[: record.line]) != head:
        return None
    after = "".join(lines[record.line :])[len(record.line_prefix) :]
    text = record.text
    k = len(commonprefix([text, after]))
    k -= len(commonprefix([text, record.line_suffix]))  # what stood there was not taken
    if k <= 0:
        return 0
    while k > 0 and _WORD.match(text[k - 1]) and (_word_at(text, k) or _word_at(after, k)):
        k -= 1  # inside a word (the suggestion's, or the one the developer wrote instead)
    return k


def _word_at(s: str, i: int) -> bool:
    return i < len(s) and _WORD.match(s[i]) is not None


@dataclass
class Tally:
    """Suggestions since the server started, by what became of them (the status bar's)."""

    shown: int = 0
    accepted: int = 0
    partial: int = 0
    dismissed: int = 0


class Outcomes:
    """The suggestion on screen per document, and the event each gets when it leaves."""

    def __init__(
        self,
        documents: Callable[[str], TextDocument | None],
        report: Callable[[str, Outcome, int | None], None],
    ) -> None:
        self.documents = documents
        self.report = report
        self.on_screen: dict[str, CompletionRecord] = {}
        """The last suggestion per document."""
        self._settled: dict[str, None] = {}
        """Completions accepted, or partly accepted by the client's own word (in order)."""
        self.tally = Tally()

    def showing(self, record: CompletionRecord) -> None:
        """``record`` is on screen in its document; the one there before left."""
        old = self.on_screen.get(record.uri)
        if old is not None and old.id == record.id:
            return
        if old is not None:
            self._leave(old)
        self.on_screen[record.uri] = record
        self.tally.shown += 1

    def settled(self, completion_id: str, whole: bool = True) -> None:
        """The client accepted ``completion_id`` (whole, or in part and said so)."""
        if completion_id not in self._settled:
            if whole:
                self.tally.accepted += 1
            else:
                self.tally.partial += 1
        self._settled[completion_id] = None
        if len(self._settled) > 4096:  # ids of long-gone suggestions: forget the oldest
            self._settled = dict.fromkeys(list(self._settled)[-1024:])

    def closing(self, uri: str) -> None:
        """``uri`` is closing (call while its text is still readable)."""
        old = self.on_screen.pop(uri, None)
        if old is not None:
            self._leave(old)

    def drop(self, uri: str) -> None:
        """Forget ``uri``'s suggestion without a word (the document became excluded)."""
        self.on_screen.pop(uri, None)

    def _leave(self, record: CompletionRecord) -> None:
        if record.id in self._settled:
            del self._settled[record.id]
            return
        k = taken_chars(record, self.documents(record.uri))
        if k is None or k >= len(record.text.rstrip()):
            return  # unknown, or whole: an accept's command is on its way
        if k >= MIN_PARTIAL and _WORD.search(record.text[:k]):
            self.tally.partial += 1
            self.report(record.id, "partial", k)
        else:
            self.tally.dismissed += 1
            self.report(record.id, "dismissed", None)
