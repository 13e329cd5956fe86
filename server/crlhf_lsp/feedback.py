"""What users say about completions: shown/accepted events, the lines of accepted completions
followed through later edits, and 👍/👎 line ratings, all leaving through the outbox.

``Feedback`` runs on the event loop. It reads documents through ``documents(uri)`` (the
workspace) and writes to ``outbox()``, both callables because the server sets them up only
at ``initialize`` and may replace the outbox when its path setting changes. Nothing about a
document for which ``excluded(uri)`` is true (:mod:`crlhf_lsp.privacy`) is followed,
offered for rating or queued, also for a completion made there before it became excluded.
What became of accepted lines is reported ``retention_delays()`` seconds after the accept
(:mod:`crlhf_lsp.retention`), from an event-loop timer, never from the keystroke path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from crlhf_contract.protocol import CMD_RATE
from crlhf_contract.schemas import EventIn, EventKind, RatingIn
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument

from crlhf_lsp.completion import CompletionRecord
from crlhf_lsp.errors import OutboxFull
from crlhf_lsp.outbox import Outbox
from crlhf_lsp.retention import DEFAULT_DELAYS, Retention
from crlhf_lsp.tracking import Change, TrackedLine, Tracker

REMEMBERED_COMPLETIONS = 1024
RATE = CMD_RATE
PENDING_ACCEPTS = 16
"""Accepted completions per document still waiting for their text to show up in it."""


class Feedback:
    def __init__(
        self,
        documents: Callable[[str], TextDocument | None],
        outbox: Callable[[], Outbox | None],
        excluded: Callable[[str], bool] = lambda uri: False,
        retention_delays: Callable[[], Sequence[float]] = lambda: DEFAULT_DELAYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.documents = documents
        self.outbox = outbox
        self.excluded = excluded
        self.retention_delays = retention_delays
        self.clock = clock
        self.tracker = Tracker()
        self.retention = Retention()
        self.completions: OrderedDict[str, CompletionRecord] = OrderedDict()
        self.pending_accepts: dict[str, list[tuple[CompletionRecord, str]]] = {}
        self.votes: dict[tuple[str, int], int] = {}
        self.withheld: set[str] = set()
        """Completions made in documents excluded since: refused whatever comes later."""

    def remember(self, record: CompletionRecord) -> None:
        self.completions[record.id] = record
        while len(self.completions) > REMEMBERED_COMPLETIONS:
            self.completions.popitem(last=False)

    def forget(self, uri: str) -> None:
        self.tracker.forget(uri)
        self.retention.forget(uri)
        self.pending_accepts.pop(uri, None)

    # --- to the outbox --------------------------------------------------------------------

    def _queue(self, put: Callable[[Outbox], None]) -> bool:
        outbox = self.outbox()
        if outbox is None:
            return False
        try:
            put(outbox)
        except OutboxFull:
            return False
        return True

    def _queue_completion(self, record: CompletionRecord | None) -> None:
        if record is not None and not record.queued:
            record.queued = self._queue(lambda outbox: outbox.put_completion(record.row))

    def _withheld(self, cid: uuid.UUID) -> bool:
        """Whether completion ``cid`` was made in a document that is excluded now: then it
        is forgotten, and nothing about it leaves, now or later."""
        key = str(cid)
        if key in self.withheld:
            return True
        record = self.completions.get(key)
        if record is None or not self.excluded(record.uri):
            return False
        self.withheld.add(key)
        del self.completions[key]
        self.forget(record.uri)
        return True

    def event(self, completion_id: Any, kind: EventKind, accepted_chars: int | None = None) -> None:
        cid = completion_uuid(completion_id)
        if self._withheld(cid):
            return
        record = self.completions.get(str(cid))
        self._queue_completion(record)
        row = EventIn(
            event_id=uuid.uuid4(), completion_id=cid, kind=kind, accepted_chars=accepted_chars
        )
        self._queue(lambda outbox: outbox.put_event(row))
        if record is not None and kind in ("accepted", "partial"):
            text = record.text if accepted_chars is None else record.text[:accepted_chars]
            self._track(record, text)

    def rate(self, triples: list[tuple[uuid.UUID, int, int]]) -> int:
        rated = 0
        for cid, line, vote in triples:
            if self._withheld(cid):
                continue
            self._queue_completion(self.completions.get(str(cid)))
            row = RatingIn(event_id=uuid.uuid4(), completion_id=cid, line=line, label=vote)
            if self._queue(lambda outbox, row=row: outbox.put_rating(row)):
                rated += 1
                self.votes[(str(cid), line)] = vote
        return rated

    # --- following accepted lines ---------------------------------------------------------

    def _track(self, record: CompletionRecord, text: str) -> None:
        """Follow the accepted ``text`` in its document (now, or once its edit arrives)."""
        if not text.strip():
            return
        if not self._locate(record, text):
            self.pending_accepts.setdefault(record.uri, []).append((record, text))

    def _locate(self, record: CompletionRecord, text: str) -> bool:
        doc = self.documents(record.uri)
        if doc is None:
            return False
        source = doc.source
        lines = doc.lines
        expected = sum(map(len, lines[: record.line])) + len(record.line_prefix)
        window = max(len(text) * 2, 20_000)
        start, found = max(0, expected - window), []
        while (pos := source.find(text, start, expected + window + len(text))) != -1:
            found.append(pos)
            start = pos + 1
        if not found:
            return False
        pos = min(found, key=lambda p: abs(p - expected))
        first = source.count("\n", 0, pos)
        count = text.count("\n") + 1
        texts = [line.rstrip("\r\n") for line in lines[first : first + count]]
        tracked = self.tracker.track(record.uri, record.id, first, texts)
        record.tracked = True
        self._watch(record, tracked)
        return True

    # --- what became of accepted lines ----------------------------------------------------

    def _watch(self, record: CompletionRecord, tracked: list[TrackedLine]) -> None:
        delays = list(self.retention_delays())
        self.retention.watch(
            record.id,
            record.uri,
            tracked,
            prefix=record.line_prefix,
            now=self.clock(),
            delays=delays,
        )
        if record.id not in self.retention.watches:
            self.tracker.prune(record.id)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (unit tests): they call flush_retention themselves
            return
        for delay in set(delays):
            loop.call_later(delay + 0.001, self.flush_retention)

    def flush_retention(self) -> int:
        """Queue the ``retained`` events due now; returns how many were queued."""
        events, finished = self.retention.due(self.clock())
        for cid in finished:
            self.tracker.prune(cid)
        queued = 0
        for row in events:
            if self._withheld(row.completion_id):
                continue
            self._queue_completion(self.completions.get(str(row.completion_id)))
            queued += self._queue(lambda outbox, row=row: outbox.put_event(row))
        return queued

    def did_change(
        self,
        uri: str,
        changes: Sequence[types.TextDocumentContentChangeEvent],
        encoding: str,
    ) -> None:
        """Move the tracked lines through ``changes`` (the document already holds them)."""
        if (self.tracker.docs.get(uri) or uri in self.pending_accepts) and self.excluded(uri):
            self.forget(uri)
            return
        if self.tracker.docs.get(uri):
            for change in changes:
                if isinstance(change, types.TextDocumentContentChangePartial):
                    start, end = change.range.start, change.range.end
                    span = (start.line, start.character), (end.line, end.character)
                    self.tracker.apply(uri, Change(change.text, *span), [], encoding)
                else:  # the whole document: its lines are matched by text
                    self.tracker.apply(uri, Change(change.text), self._lines(uri), encoding)
        pending = self.pending_accepts.pop(uri, [])
        still = [(r, t) for r, t in pending if not self._locate(r, t)]
        if still:
            self.pending_accepts[uri] = still[-PENDING_ACCEPTS:]

    def _lines(self, uri: str) -> list[str]:
        doc = self.documents(uri)
        return [line.rstrip("\r\n") for line in doc.lines] if doc is not None else []

    # --- what the editor shows ------------------------------------------------------------

    def code_actions(self, uri: str, first: int, last: int) -> list[types.CodeAction]:
        """👍/👎 quick fixes over the tracked lines on document lines ``first..last``."""
        tracked = self.tracker.at(uri, first, last)
        if not tracked or self.excluded(uri):
            return []
        actions = []
        for vote, mark, word in ((1, "👍", "correct"), (-1, "👎", "wrong")):
            args: list[Any] = []
            for t in tracked:
                args += [t.completion_id, t.index, vote]
            n = len(tracked)
            title = (
                f"{mark} crlhf: line is {word}" if n == 1 else f"{mark} crlhf: {n} lines are {word}"
            )
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=types.CodeActionKind.QuickFix,
                    command=types.Command(title=title, command=RATE, arguments=args),
                )
            )
        return actions

    def rated_hints(self, uri: str, first: int, last: int) -> list[types.InlayHint]:
        """ "👍 rated" / "👎 rated" at the end of each rated line on lines ``first..last``."""
        doc = self.documents(uri)
        if doc is None or self.excluded(uri):
            return []
        lines = doc.lines
        hints = []
        for t in self.tracker.at(uri, first, last):
            vote = self.votes.get((t.completion_id, t.index))
            if vote is None or t.line >= len(lines):
                continue
            end = len(lines[t.line].rstrip("\r\n").encode("utf-16-le")) // 2
            hints.append(
                types.InlayHint(
                    position=types.Position(line=t.line, character=end),
                    label="👍 rated" if vote == 1 else "👎 rated",
                    padding_left=True,
                )
            )
        return hints


def completion_uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise JsonRpcInvalidParams.of(ValueError(f"{value!r} is not a completion id")) from None


def parse_rate_args(args: tuple[Any, ...]) -> list[tuple[uuid.UUID, int, int]]:
    """``(id, line, vote, id, line, vote …)`` or ``([id, line, vote], …)`` → triples."""
    flat: list[Any] = []
    for arg in args:
        flat += list(arg) if isinstance(arg, list | tuple) else [arg]
    if not flat or len(flat) % 3:
        raise JsonRpcInvalidParams.of(
            ValueError("crlhf.rate takes (completion id, line, vote) triples")
        )
    triples = []
    for i in range(0, len(flat), 3):
        cid, line, vote = flat[i : i + 3]
        if not isinstance(line, int) or line < 0 or vote not in (1, -1):
            raise JsonRpcInvalidParams.of(
                ValueError(f"crlhf.rate: line {line!r} must be ≥ 0 and vote {vote!r} ±1")
            )
        triples.append((completion_uuid(cid), line, int(vote)))
    return triples
