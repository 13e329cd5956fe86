"""crlhf_lsp.feedback in process: an accepted completion's lines followed through edits,
ratings and events queued (completion first), rated lines hinted; typing elsewhere in a
document with nothing tracked costs no read of the document; the arguments of crlhf.rate."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from crlhf_contract.schemas import CompletionIn
from crlhf_lsp.completion import CompletionRecord
from crlhf_lsp.feedback import Feedback, parse_rate_args
from lsp_harness import RecordingOutbox
from lsprotocol import types
from pygls.workspace import TextDocument

URI = "file:///f.py"


class Documents:
    def __init__(self, text: str) -> None:
        self.doc = TextDocument(URI, text)
        self.reads = 0

    def __call__(self, uri: str) -> TextDocument | None:
        self.reads += 1
        return self.doc if uri == URI else None

    def change(self, start: tuple[int, int], end: tuple[int, int], text: str) -> list[Any]:
        rng = types.Range(
            start=types.Position(line=start[0], character=start[1]),
            end=types.Position(line=end[0], character=end[1]),
        )
        change = types.TextDocumentContentChangePartial(range=rng, text=text)
        self.doc.apply_change(change)
        return [change]


def accepted_record(text: str) -> CompletionRecord:
    row = CompletionIn(id=uuid.uuid4(), prompt="def f():\n    ", text=text, model="m")
    return CompletionRecord(URI, 1, "    ", "", text, row)


def test_accepted_lines_follow_edits_and_ratings_queue_the_completion_first() -> None:
    text = "total = 1\n    return total"
    docs = Documents("def f():\n    " + text + "\n")
    outbox = RecordingOutbox()
    feedback = Feedback(docs, lambda: outbox)
    record = accepted_record(text)
    feedback.remember(record)
    feedback.event(record.id, "accepted")
    assert [kind for kind, _ in outbox.rows] == ["completion", "event"]
    assert [t.line for t in feedback.tracker.at(URI, 0, 99)] == [1, 2]

    reads = docs.reads
    feedback.did_change(URI, docs.change((0, 0), (0, 0), "import os\n\n"), "utf-16")
    assert docs.reads == reads  # incremental changes move lines without reading the document
    assert [t.line for t in feedback.tracker.at(URI, 0, 99)] == [3, 4]
    [up, down] = feedback.code_actions(URI, 4, 4)
    assert up.command is not None and up.command.arguments == [record.id, 1, 1]
    assert down.title == "👎 crlhf: line is wrong"

    assert feedback.rate([(uuid.UUID(record.id), 1, -1)]) == 1
    assert [kind for kind, _ in outbox.rows] == ["completion", "event", "rating"]
    [hint] = feedback.rated_hints(URI, 0, 99)
    assert (hint.position.line, hint.label) == (4, "👎 rated")
    feedback.forget(URI)
    assert feedback.code_actions(URI, 0, 99) == []


def test_an_accept_before_its_edit_is_tracked_once_the_text_arrives() -> None:
    text = "return 42"
    docs = Documents("def f():\n    \n")
    feedback = Feedback(docs, lambda: None)  # no outbox: events are simply not queued
    record = accepted_record(text)
    feedback.remember(record)
    feedback.event(record.id, "accepted")
    assert feedback.tracker.at(URI, 0, 99) == [] and feedback.pending_accepts[URI]
    feedback.did_change(URI, docs.change((1, 4), (1, 4), text), "utf-16")
    assert [t.line for t in feedback.tracker.at(URI, 0, 99)] == [1]
    assert URI not in feedback.pending_accepts
    assert feedback.rate([(uuid.UUID(record.id), 0, 1)]) == 0  # nowhere to queue it


def test_rate_arguments() -> None:
    cid = str(uuid.uuid4())
    assert parse_rate_args((cid, 0, 1, cid, 2, -1)) == [
        (uuid.UUID(cid), 0, 1),
        (uuid.UUID(cid), 2, -1),
    ]
    assert parse_rate_args(([cid, 1, -1],)) == [(uuid.UUID(cid), 1, -1)]
    for bad in ((cid, 0), (cid, -1, 1), (cid, 0, 2), ("x", 0, 1)):
        with pytest.raises(Exception, match="crlhf.rate|completion id"):
            parse_rate_args(bad)
