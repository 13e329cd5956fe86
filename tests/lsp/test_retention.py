"""crlhf_lsp.retention in process: what became of accepted lines, reported when due (a fake
clock), with the edit distance and the correction of a rewritten line; the keystroke path
reads no document and computes no verdict."""

from __future__ import annotations

import uuid

import pytest
from crlhf_contract.schemas import CompletionIn
from crlhf_lsp.completion import CompletionRecord
from crlhf_lsp.feedback import Feedback
from crlhf_lsp.retention import edit_distance
from lsp_harness import RecordingOutbox
from lsprotocol import types
from pygls.workspace import TextDocument

URI = "file:///r.py"
TEXT = "total = 1\n    total += 2\n    return total"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def change(doc: TextDocument, start: tuple[int, int], end: tuple[int, int], text: str) -> list:
    rng = types.Range(
        start=types.Position(line=start[0], character=start[1]),
        end=types.Position(line=end[0], character=end[1]),
    )
    c = types.TextDocumentContentChangePartial(range=rng, text=text)
    doc.apply_change(c)
    return [c]


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("", "", 0), ("abc", "abc", 0), ("kitten", "sitting", 3), ("", "ab", 2), ("ab", "ba", 2)],
)
def test_edit_distance_is_levenshtein(a: str, b: str, d: int) -> None:
    assert edit_distance(a, b) == d


def test_kept_edited_and_deleted_lines_are_reported_when_due() -> None:
    doc = TextDocument(URI, "def f():\n    " + TEXT + "\n")
    reads = 0

    def documents(uri: str) -> TextDocument:
        nonlocal reads
        reads += 1
        return doc

    outbox, clock = RecordingOutbox(), Clock()
    feedback = Feedback(documents, lambda: outbox, retention_delays=lambda: (30, 300), clock=clock)
    row = CompletionIn(id=uuid.uuid4(), prompt="def f():\n    ", text=TEXT, model="m")
    record = CompletionRecord(URI, 1, "    ", "", TEXT, row)
    feedback.remember(record)
    feedback.event(record.id, "accepted")
    reads_after_accept = reads
    # line 1 rewritten (selected and retyped), line 2 deleted, line 0 kept
    feedback.did_change(URI, change(doc, (2, 4), (2, 14), ""), "utf-16")
    feedback.did_change(URI, change(doc, (2, 4), (2, 4), "x = 0"), "utf-16")
    feedback.did_change(URI, change(doc, (2, 9), (3, 16), ""), "utf-16")
    assert reads == reads_after_accept  # the keystroke path reads no document
    assert [t.line for t in feedback.tracker.at(URI, 0, 9)] == [1]  # the rewrite: not rateable

    clock.now += 29.0
    assert feedback.flush_retention() == 0  # nothing due yet
    clock.now += 1.0
    assert feedback.flush_retention() == 1
    [event] = [row for kind, row in outbox.rows if kind == "event" and row.kind == "retained"]
    assert (event.after_s, str(event.completion_id)) == (30.0, record.id)
    assert [line.model_dump() for line in event.lines] == [
        {"line": 0, "state": "unchanged", "distance": 0, "correction": None},
        {"line": 1, "state": "edited", "distance": 7, "correction": "    x = 0"},
        {"line": 2, "state": "deleted", "distance": len("    return total"), "correction": None},
    ]
    clock.now += 270.0
    assert feedback.flush_retention() == 1  # the 5-minute check, the last one
    assert feedback.retention.watches == {}
    assert [t.index for t in feedback.tracker.docs[URI]] == [0]  # the rewrite let go


def test_a_closed_document_sends_no_retention() -> None:
    doc = TextDocument(URI, "def f():\n    " + TEXT + "\n")
    outbox, clock = RecordingOutbox(), Clock()
    feedback = Feedback(lambda uri: doc, lambda: outbox, retention_delays=lambda: (1,), clock=clock)
    row = CompletionIn(id=uuid.uuid4(), prompt="def f():\n    ", text=TEXT, model="m")
    record = CompletionRecord(URI, 1, "    ", "", TEXT, row)
    feedback.remember(record)
    feedback.event(record.id, "accepted")
    feedback.forget(URI)
    clock.now += 5
    assert feedback.flush_retention() == 0


def test_the_retention_delays_are_a_setting_of_seconds() -> None:
    from crlhf_lsp.errors import SettingsError
    from crlhf_lsp.settings import Settings

    settings = Settings(storeUrl="")
    assert settings.retentionDelays == (30.0, 300.0)
    assert settings.merged({"crlhf": {"retentionDelays": [0.5, 2]}}).retentionDelays == (0.5, 2.0)
    assert settings.merged({"retentionDelays": []}).retentionDelays == ()
    for bad in (["30"], [-1], [True], [1e9]):
        with pytest.raises(SettingsError, match="retentionDelays"):
            settings.merged({"retentionDelays": bad})


def test_a_later_accept_of_the_same_completion_restarts_its_checks() -> None:
    doc = TextDocument(URI, "def f():\n    " + TEXT + "\n")
    outbox, clock = RecordingOutbox(), Clock()
    feedback = Feedback(
        lambda uri: doc, lambda: outbox, retention_delays=lambda: (10,), clock=clock
    )
    row = CompletionIn(id=uuid.uuid4(), prompt="def f():\n    ", text=TEXT, model="m")
    record = CompletionRecord(URI, 1, "    ", "", TEXT, row)
    feedback.remember(record)
    feedback.event(record.id, "partial", accepted_chars=len("total = 1"))
    clock.now += 5
    feedback.event(record.id, "accepted")
    clock.now += 5  # the partial accept's check would be due now: it was replaced
    assert feedback.flush_retention() == 0
    clock.now += 5
    assert feedback.flush_retention() == 1
    [event] = [row for kind, row in outbox.rows if kind == "event" and row.kind == "retained"]
    assert [line.line for line in event.lines] == [0, 1, 2]


def test_a_first_line_rewritten_before_the_completion_gives_no_correction() -> None:
    """The prompt ended inside line 0 (``msg = "%s items"``), the completion wrote `` % n``;
    the developer retyped the whole line. What replaced the completion's part is unknown
    (their text no longer starts with the prompt's), so no correction: sent as one, the
    whole line would be trained as a continuation of the prompt that already holds half of
    it. The distance is the whole line's."""
    from crlhf_lsp.retention import line_state
    from crlhf_lsp.tracking import TrackedLine

    head = '    msg = "%s items"'
    line = TrackedLine("c", 0, 3, head + " % n", '    msg = f"{n} items"')
    state = line_state(line, head)
    assert (state.state, state.correction) == ("edited", None)
    assert state.distance == edit_distance(head + " % n", '    msg = f"{n} items"')
    kept = TrackedLine("c", 0, 3, head + " % n", head + " % (n,)")
    assert line_state(kept, head).correction == " % (n,)"  # the prompt's part untouched
