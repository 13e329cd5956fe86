"""crlhf_lsp.completion: the cursor, typing through a suggestion, and the model call
(tokenized once: the ids counted for the prompt budget are the ids the model gets)."""

from __future__ import annotations

import threading
from pathlib import Path

from crlhf_lsp.backends import GenerationRequest, MemoryBackend
from crlhf_lsp.backends.base import Generation
from crlhf_lsp.completion import (
    CompletionRecord,
    Cursor,
    after_accept,
    generate,
    read_cursor,
    typed_through,
)
from crlhf_lsp.settings import Settings
from lsprotocol import types
from pygls.workspace import TextDocument

SOURCE = "import os\n\n\ndef mean(values):\n    total = 1\n"


def cursor_at(text: str, line: int, character: int) -> Cursor:
    doc = TextDocument("file:///t.py", text, language_id="python")
    cursor = read_cursor(doc, doc.uri, types.Position(line=line, character=character), "utf-16")
    assert cursor is not None
    return cursor


def test_cursor_splits_the_document_at_utf16_positions() -> None:
    cursor = cursor_at("a = '🙂'\nb = 2\n", 0, 7)  # after the emoji's two UTF-16 units
    assert cursor.line_prefix == "a = '🙂" and cursor.line_suffix == "'"
    assert cursor.prefix == "a = '🙂" and cursor.suffix == "'\nb = 2\n"
    assert cursor.around == ("", "\nb = 2\n")
    doc = TextDocument("file:///t.py", "x\n")
    assert read_cursor(doc, doc.uri, types.Position(line=5, character=0), "utf-16") is None


def record_at(cursor: Cursor, text: str) -> CompletionRecord:
    return CompletionRecord.at(cursor, text, row=None)  # type: ignore[arg-type] - not read here


def test_typing_the_suggestion_is_answered_from_it_until_it_diverges() -> None:
    shown = record_at(cursor_at(SOURCE, 4, 4), "total = 1")  # text after its cursor
    source = SOURCE.replace("    total = 1\n", "    ")
    record = record_at(cursor_at(source, 4, 4), "return sum(values)")
    typed = source + "ret"
    assert typed_through(record, cursor_at(typed, 4, 7)) == "urn sum(values)"
    assert typed_through(record, cursor_at(source + "rex", 4, 7)) is None  # diverged
    assert typed_through(record, cursor_at(source + "return sum(values)", 4, 22)) is None
    elsewhere = "# note\n" + typed
    assert typed_through(record, cursor_at(elsewhere, 5, 7)) is None  # line moved
    above = typed.replace("import os", "import re")
    assert typed_through(record, cursor_at(above, 4, 7)) is None  # document changed above
    assert typed_through(None, cursor_at(typed, 4, 7)) is None
    assert typed_through(shown, cursor_at(typed, 4, 7)) is None


class Encoding(MemoryBackend):
    """Counts its tokenizations; one token per character, as ids."""

    def __init__(self) -> None:
        super().__init__(["total = sum(values)\n    return total\n\n\nprint()"])
        self.encoded: list[str] = []

    def encode(self, text: str) -> list[int]:
        self.encoded.append(text)
        return [ord(c) for c in text]

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        generation = super().generate(request, cancel)
        generation.prompt_token_ids = request.prompt_ids
        return generation


def test_the_prompt_is_tokenized_once_and_the_model_gets_those_ids() -> None:
    backend = Encoding()
    cursor = cursor_at("def mean(values):\n    ", 1, 4)
    record = generate(backend, Settings(maxTokens=8), cursor, threading.Event())
    assert record is not None and record.text == "total = sum(values)\n    return total"
    [request] = backend.requests
    assert backend.encoded == [request.prompt]
    assert request.prompt_ids == [ord(c) for c in cursor.prefix]
    assert record.row.prompt_token_ids == request.prompt_ids
    # Without an encoder (a remote server tokenizes) the request carries no ids.
    plain = MemoryBackend(["x = 1"])
    assert generate(plain, Settings(), cursor, threading.Event()) is not None
    assert plain.requests[0].prompt_ids is None
    cancelled = threading.Event()
    cancelled.set()
    assert generate(backend, Settings(), cursor, cancelled) is None


def test_local_backend_generates_the_same_from_ids_or_text(tiny_model: Path) -> None:
    from crlhf_lsp.backends.local import LocalBackend

    backend = LocalBackend(str(tiny_model))
    prompt = "def mean(values):\n    "
    ids = backend.encode(prompt)
    assert len(ids) >= backend.count_tokens(prompt) > 0
    by_text = backend.generate(GenerationRequest(prompt, max_tokens=8), threading.Event())
    by_ids = backend.generate(
        GenerationRequest(prompt, max_tokens=8, prompt_ids=ids), threading.Event()
    )
    assert by_ids.token_ids == by_text.token_ids and by_ids.text == by_text.text
    assert by_ids.prompt_token_ids == ids
    # sampled: a seed repeats its sample, other seeds draw others (the bench's samples)
    draws = {
        seed: [
            backend.generate(
                GenerationRequest(prompt, max_tokens=12, temperature=1.5, seed=seed),
                threading.Event(),
            ).token_ids
            for _ in range(2)
        ]
        for seed in (0, 1, 2)
    }
    assert all(a == b for a, b in draws.values())
    assert len({tuple(a) for a, _ in draws.values()}) > 1


def test_after_accept_is_the_cursor_at_the_end_of_the_accepted_text() -> None:
    here = cursor_at(SOURCE, 4, 12)  # "    total = |1"
    after = after_accept(here, "2 +\n    x")
    moved = cursor_at(SOURCE[:-2] + "2 +\n    x1\n", 5, 5)
    assert (after.line, after.line_prefix, after.prefix) == (5, "    x", moved.prefix)
    assert (after.line_suffix, after.suffix) == (here.line_suffix, here.suffix)
