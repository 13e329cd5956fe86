"""What became of a suggestion that left the screen (crlhf_lsp.outcome): the document
says how much of it was taken, cut to a word; end to end over stdio, a partly typed
suggestion reaches a real store as a ``partial`` event with its characters, one passed over
as ``dismissed``, and an accepted one as ``accepted`` alone."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from crlhf_contract.schemas import CompletionIn
from crlhf_lsp.completion import CompletionRecord
from crlhf_lsp.outcome import Outcomes, taken_chars
from lsp_harness import command, edit, inline, lsp_session, open_doc, settings_for, wait_until
from pygls.workspace import TextDocument

HEAD = "def area(w, h):\n"
URI = "file:///work/area.py"


def _record(text: str, line_prefix: str = "    ", line_suffix: str = "") -> CompletionRecord:
    row = CompletionIn(id=uuid.uuid4(), prompt="p", text=text, model="m")
    return CompletionRecord(URI, 1, line_prefix, line_suffix, text, row, around=(HEAD, ""))


def _doc(text: str) -> TextDocument:
    return TextDocument(URI, text)


@pytest.mark.parametrize(
    ("now", "taken"),
    [
        ("    return w * h\n", 12),  # whole (left to the accept's command)
        ("    return w + 1\n", 9),  # "return w " kept, the operator changed
        ("    retur\n", 0),  # inside the first word: no word taken
        ("    returned = 0\n", 0),  # the developer's word, not the suggestion's
        ("    x = 1\n", 0),
        ("    \n", 0),
    ],
)
def test_the_document_says_how_much_was_taken_cut_to_a_word(now: str, taken: int) -> None:
    record = _record("return w * h")
    assert taken_chars(record, _doc(HEAD + now)) == taken


def test_an_edit_before_the_suggestion_or_a_closed_document_tells_nothing() -> None:
    record = _record("return w * h")
    assert taken_chars(record, _doc("# area\n" + HEAD + "    return w * h\n")) is None
    assert taken_chars(record, _doc("def size(w, h):\n    return w\n")) is None
    assert taken_chars(record, None) is None


def test_what_stood_after_the_cursor_already_was_not_taken() -> None:
    record = _record("h)", line_prefix="    return area(w, ", line_suffix="h)")
    assert taken_chars(record, _doc(HEAD + "    return area(w, h)\n")) == 0


def test_each_suggestion_gets_one_outcome_when_it_leaves() -> None:
    docs: dict[str, TextDocument] = {}
    said: list[tuple[str, str, int | None]] = []
    outcomes = Outcomes(docs.get, lambda cid, kind, k: said.append((cid, kind, k)))
    first, second, third = _record("return w * h"), _record("pass"), _record("return 0")
    docs[URI] = _doc(HEAD + "    return w - h\n")
    outcomes.showing(first)
    outcomes.showing(first)  # the same suggestion again (typed through): still on screen
    assert said == []
    outcomes.showing(second)
    assert said == [(first.id, "partial", len("return w "))]
    outcomes.settled(third.id)  # an accept's command may come before it is on screen
    outcomes.showing(third)
    assert said[-1] == (second.id, "dismissed", None)
    outcomes.closing(URI)  # accepted: nothing more to say
    assert len(said) == 2
    outcomes.showing(first)
    outcomes.drop(URI)  # the file became excluded: not a word about it
    outcomes.closing(URI)
    assert len(said) == 2


def _events(store: Any) -> list[tuple[str, str, int | None]]:
    engine = sa.create_engine(store.database_url)
    try:
        with engine.connect() as db:
            rows = db.execute(
                sa.text(
                    "SELECT completion_id, kind, accepted_chars FROM completion_events "
                    "WHERE kind != 'retained'"
                )
            ).all()
    finally:
        engine.dispose()
    return [(str(uuid.UUID(str(c))), k, n) for c, k, n in rows]


def _first_word(text: str) -> int:
    """Characters of ``text``'s first line up to the end of its first word of two or more
    characters (a word boundary: what follows is a space or the end of the line)."""
    line = text.split("\n", 1)[0] + "\n"
    found = re.search(r"\w\S+\s", line)
    assert found is not None, f"no word on the first line of {text!r}"
    return found.end() - 1


@pytest.mark.slow  # 10-20 s
async def test_partial_dismissed_and_accepted_suggestions_reach_the_store(
    tmp_path: Path, tiny_model: Path, live_store: Any
) -> None:
    settings = settings_for(
        tmp_path, tiny_model, storeUrl=live_store.url, token=live_store.annotator_token
    )
    source = HEAD + "    \n\n\ndef volume(w, h, d):\n    \n\n\ndef name():\n    \n"
    async with lsp_session(settings) as client:
        open_doc(client, URI, source)
        [first] = await inline(client, URI, 1, 4)
        k = _first_word(first.insert_text)
        typed = first.insert_text[:k] + "§"  # its first word, then the developer's own way
        edit(client, URI, 2, (1, 4), (1, 4), typed)
        [second] = await inline(client, URI, 5, 4)  # elsewhere: the first left the screen
        [third] = await inline(client, URI, 9, 4)  # the second passed over
        text, cid = third.insert_text, third.command.arguments[0]
        edit(client, URI, 3, (9, 4), (9, 4), text)
        await command(client, "crlhf.accepted", cid)
        await inline(client, URI, 1, 4 + len(typed))  # the third leaves, accepted
        ids = [first.command.arguments[0], second.command.arguments[0], cid]
        events = await wait_until(
            lambda: asyncio.to_thread(lambda: len(got := _events(live_store)) >= 3 and got),
            timeout=30,
        )
        await asyncio.sleep(0.5)  # anything said twice would be here by now
        events = _events(live_store)
    assert sorted(events) == sorted(
        [(ids[0], "partial", k), (ids[1], "dismissed", None), (ids[2], "accepted", None)]
    )
