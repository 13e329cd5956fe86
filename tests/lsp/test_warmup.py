"""The KV cache warmed on open and save (crlhf_lsp.warmup): with the tiny model, a warm-up
leaves the prompt of the place the user will likely ask at in the backend's cache, so that
a request there, or a few lines on, has little left to read; over stdio, opening and
saving a file warms it, and a request stops a warm-up."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from crlhf_lsp.backends.local import LocalBackend
from crlhf_lsp.completion import TokenCounter, prompt_at
from crlhf_lsp.warmup import warm_cursor, warm_line, warm_prompt
from lsp_harness import edit, inline, lsp_session, open_doc, request, settings_for, wait_until
from lsprotocol import types
from pygls.workspace import TextDocument

URI = "file:///work/warm.py"
BODY = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(40))


def test_the_line_warmed_is_the_last_asked_at_else_the_last_written() -> None:
    doc = TextDocument(URI, "import os\n\nx = 1\n\n\n")
    assert warm_line(doc, None) == 2
    assert warm_line(doc, 0) == 0
    assert warm_line(doc, 99) == 2  # a line the document no longer has
    assert warm_line(doc, 5) == 5  # its end
    assert warm_line(TextDocument(URI, ""), None) == 0


def _whole_prompt_ids(backend: LocalBackend, doc: TextDocument, line: int) -> list[int]:
    cursor = warm_cursor(doc, URI, line, "utf-16")
    assert cursor is not None
    counter = TokenCounter(backend)
    prompt = prompt_at(backend, cursor, counter)
    assert not prompt.fim
    ids = counter.ids_of(prompt.text)
    assert ids is not None
    return ids


def test_a_warm_up_leaves_the_prompt_in_the_cache(tiny_model: Path) -> None:
    backend = LocalBackend(str(tiny_model))
    doc = TextDocument(URI, BODY)
    line = warm_line(doc, None)
    ids = _whole_prompt_ids(backend, doc, line)
    assert backend.cached_tokens(ids, URI) == 0  # cold
    cursor = warm_cursor(doc, URI, line, "utf-16")
    assert cursor is not None
    assert warm_prompt(backend, cursor, threading.Event()) == len(ids)
    assert backend.cached_tokens(ids, URI) == len(ids) - 1  # all but the one fed at generation
    assert warm_prompt(backend, cursor, threading.Event()) == 0  # nothing left to read

    # The developer writes two more lines and asks there: the cache holds all it shared.
    grown = TextDocument(URI, BODY + "def g(y):\n    return y\n")
    later = _whole_prompt_ids(backend, grown, line + 4)  # the end of "    return y"
    assert backend.cached_tokens(later, URI) >= len(ids) - 1
    assert len(later) > len(ids)

    stopped = threading.Event()
    stopped.set()
    assert warm_prompt(backend, cursor, stopped) == 0  # cancelled before reading anything


@pytest.mark.slow  # 10-20 s
async def test_opening_and_saving_warm_the_model_and_a_request_stops_it(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with lsp_session(settings_for(tmp_path, tiny_model)) as client:
        # The model loads at initialize; a file opened before it is ready is not warmed.
        await wait_until(lambda: _loaded(client), timeout=60)
        open_doc(client, URI, BODY)
        stats = await wait_until(lambda: _stats_when(client, warmed=1), timeout=30)
        assert stats["modelCalls"] == 0
        [item] = await inline(client, URI, 160, 0)
        assert item.insert_text
        assert (await request(client, "crlhf/completionStats"))["modelCalls"] == 1
        # The developer writes a function there and saves: the model reads the new lines.
        edit(client, URI, 2, (160, 0), (160, 0), "def g(y):\n    return y\n")
        client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI))
        )
        after = await wait_until(lambda: _stats_when(client, warmed=2), timeout=30)
        assert after["modelCalls"] == 1


async def _loaded(client) -> bool:  # type: ignore[no-untyped-def]
    status = await request(client, "crlhf/status")
    return bool(status["model"]) and not status["modelLoading"]


async def _stats_when(client, **expected):  # type: ignore[no-untyped-def]
    stats = await request(client, "crlhf/completionStats")
    if all(stats[k] == v for k, v in expected.items()):
        return stats
    return None
