"""The KV cache warmed when a file is opened or saved, as llama.vim does (issue 17).

A suggestion at a new position costs the model the prompt it has not read: some 1,500
tokens, seconds on 2 cores. When a developer opens a file, or saves it and pauses, the
model thread is idle: reading then the prompt of the place they are likely to ask at next
(a prefill, no generation) leaves it in the backend's KV cache, and the first request
there reads only what changed since. The prompt is cut from the top in whole-line chunks
(:mod:`crlhf_lsp.prompt`), so a request a few lines away shares its beginning.

Where they are likely to ask: on save, the line of their last request in the file; on
open, the file's end if they never asked there (new code goes at the end more than
anywhere, and the editor does not say where its cursor is). It starts after half a second
without a request (a file opened to type in at once costs nothing) and stops at any request,
in any document, within 64 tokens of work. Only an in-process backend is warmed (llama.cpp,
transformers): a remote server is shared by a team.
"""

from __future__ import annotations

import threading

from lsprotocol import types
from pygls.workspace import TextDocument

from crlhf_lsp.backends import Backend
from crlhf_lsp.completion import Cursor, TokenCounter, prompt_at, read_cursor

__all__ = ["warm_cursor", "warm_line", "warm_prompt"]


def warm_line(doc: TextDocument, asked_at: int | None) -> int:
    """The line whose end the warm-up reads up to: ``asked_at`` (the last request's line)
    if the user asked in this file, else its last line that is not blank."""
    lines = doc.lines
    if asked_at is not None and asked_at <= len(lines):  # len(lines): the end
        return asked_at
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i
    return 0


def warm_cursor(doc: TextDocument, uri: str, line: int, encoding: str) -> Cursor | None:
    """The cursor at the end of ``line`` (the text on it is part of the prefix)."""
    end = types.Position(line=line, character=1 << 30)  # clamped to the line's end
    return read_cursor(doc, uri, end, encoding)


def warm_prompt(backend: Backend, cursor: Cursor, cancel: threading.Event) -> int:
    """On the model thread: read the whole prompt at ``cursor`` into ``backend``'s KV cache
    (what a request there would read); the tokens it had to read (0: cached already, or
    the backend cannot tell its tokens)."""
    counter = TokenCounter(backend)
    prompt = prompt_at(backend, cursor, counter)
    # A FIM prompt is counted in parts, never whole: encode it once more.
    ids = counter.ids_of(prompt.text) or backend.encode(prompt.text)
    if ids is None or cancel.is_set():
        return 0
    cached = backend.cached_tokens(ids, cursor.uri)
    if cached is not None and len(ids) - cached <= 1:
        return 0
    backend.prefill(ids, cursor.uri, cancel)
    return len(ids) - (cached or 0)
