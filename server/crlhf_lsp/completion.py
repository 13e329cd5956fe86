"""One completion request: the cursor read from the document, the suggestion on screen that
typing may run through, and the model call that makes a new one.

``read_cursor`` and ``typed_through`` run on the event loop (cheap: string slices);
``generate`` runs on the model thread: prompt, generation, post-processing, and the
completion row that the store will receive if the suggestion is shown or accepted.

The prompt is tokenized once: ``build_prompt`` counts its tokens with the backend's
``encode`` where it has one, and that encoding goes to the model with the request.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from crlhf_contract.protocol import CMD_ACCEPTED
from crlhf_contract.schemas import CompletionIn
from lsprotocol import types
from pygls.workspace import TextDocument

from crlhf_lsp.backends import Backend, Generation, GenerationRequest
from crlhf_lsp.postprocess import Cutter, inside_triple_quotes
from crlhf_lsp.prompt import Prompt, build_prompt
from crlhf_lsp.settings import Settings
from crlhf_lsp.timebudget import (
    SHORT_PROMPT,
    LineDeadline,
    budget_seconds,
    log_call,
    prefill_tokens,
)
from crlhf_lsp.tracking import to_index

log = logging.getLogger("crlhf_lsp")

PROMPT_BUDGET = 1536
"""Tokens of prefix (+ suffix) sent to the model."""
ACCEPTED = CMD_ACCEPTED


@dataclass
class Cursor:
    """Where a request was made, read from the document at that moment."""

    uri: str
    line: int
    character: int
    line_prefix: str
    line_suffix: str
    prefix: str
    suffix: str
    language: str
    context: Callable[[Callable[[str], int]], str] | None = None
    """Code from other files for the prompt (``crlhf.ringBuffer``), rendered on the model
    thread with the backend's token counter."""

    @property
    def around(self) -> tuple[str, str]:
        """The document before the cursor's line and after it."""
        head = self.prefix[: len(self.prefix) - len(self.line_prefix)]
        return head, self.suffix[len(self.line_suffix) :]


@dataclass
class CompletionRecord:
    uri: str
    line: int
    line_prefix: str
    line_suffix: str
    text: str
    row: CompletionIn
    around: tuple[str, str] = ("", "")
    """The document before the cursor's line and after it, when the suggestion was made."""
    queued: bool = False
    tracked: bool = False
    widen: list[int] | None = None
    """The whole prompt's ids, when the suggestion came from the short one (to be read into
    the KV cache at the next pause)."""

    @property
    def id(self) -> str:
        return str(self.row.id)

    @classmethod
    def at(cls, cursor: Cursor, text: str, row: CompletionIn) -> CompletionRecord:
        """The suggestion ``text`` made at ``cursor``."""
        return cls(
            cursor.uri,
            cursor.line,
            cursor.line_prefix,
            cursor.line_suffix,
            text,
            row,
            around=cursor.around,
        )


def read_cursor(
    doc: TextDocument, uri: str, position: types.Position, encoding: str
) -> Cursor | None:
    """The document around ``position``; None for a line past the end or a negative one."""
    lines = doc.lines
    if position.line < 0 or position.line > len(lines) or position.character < 0:
        return None
    text = lines[position.line] if position.line < len(lines) else ""
    line_text = text.rstrip("\r\n")
    col = to_index(line_text, position.character, encoding)
    offset = sum(map(len, lines[: position.line])) + col
    source = doc.source
    return Cursor(
        uri=uri,
        line=position.line,
        character=position.character,
        line_prefix=line_text[:col],
        line_suffix=line_text[col:],
        prefix=source[:offset],
        suffix=source[offset:],
        language=doc.language_id or "",
    )


def after_accept(cursor: Cursor, text: str) -> Cursor:
    """Where the cursor will be once ``text``, suggested at ``cursor``, is accepted."""
    line_prefix = (cursor.line_prefix + text).rsplit("\n", 1)[-1]
    return dataclasses.replace(
        cursor,
        line=cursor.line + text.count("\n"),
        character=len(line_prefix),  # not read by the cache, which alone gets this cursor
        line_prefix=line_prefix,
        prefix=cursor.prefix + text,
    )


def typed_through(record: CompletionRecord | None, cursor: Cursor) -> str | None:
    """The rest of ``record``'s suggestion if the user has been typing it at ``cursor``."""
    if record is None or record.line != cursor.line or record.line_suffix != cursor.line_suffix:
        return None
    if not cursor.line_prefix.startswith(record.line_prefix):
        return None
    typed = cursor.line_prefix[len(record.line_prefix) :]
    if len(typed) >= len(record.text) or not record.text.startswith(typed):
        return None
    if record.around != cursor.around:  # the document changed elsewhere
        return None
    return record.text[len(typed) :]


def generate(
    backend: Backend, settings: Settings, cursor: Cursor, cancel: threading.Event
) -> CompletionRecord | None:
    """A new suggestion at ``cursor`` (on the model thread); None if cancelled or empty."""
    if cancel.is_set():
        return None
    counter = TokenCounter(backend)
    prompt, widen = _prompt_within_budget(backend, cursor, counter)
    cutter = Cutter(cursor.line_prefix, cursor.line_suffix, inside_triple_quotes(cursor.prefix))
    deadline = LineDeadline(budget_seconds(), cutter.is_complete)
    request = GenerationRequest(
        prompt=prompt.text,
        prompt_ids=counter.ids_of(prompt.text),
        max_tokens=settings.maxTokens,
        temperature=settings.temperature,
        seed=settings.seed,
        cache_key=cursor.uri,
        should_stop=deadline,
        stop=["\n"] if cutter.single_line else ["\n\n\n"],
    )
    generation = _timed_generate(backend, request, cancel, deadline)
    if generation.cancelled:
        return None
    raw = deadline.complete_lines(generation.text) if deadline.hit else generation.text
    text = cutter.finish(raw, cursor.suffix)
    if not text:
        return None
    generation = backend.trim(generation, text)
    row = CompletionIn(
        id=uuid.uuid4(),
        prompt=prompt.prefix,
        suffix=prompt.suffix if prompt.fim else "",
        language=cursor.language[:64],
        text=text,
        model=backend.name[:512],
        adapter_version=getattr(backend, "adapter", None),
        token_ids=generation.token_ids,
        token_logprobs=generation.token_logprobs,
        prompt_token_ids=generation.prompt_token_ids,
    )
    record = CompletionRecord.at(cursor, text, row)
    record.widen = widen
    return record


def prompt_at(
    backend: Backend,
    cursor: Cursor,
    counter: TokenCounter,
    budget: int = PROMPT_BUDGET,
    context: str | None = None,
) -> Prompt:
    """The prompt at ``cursor`` within ``budget`` tokens; ``context`` (the ring buffer's
    code) is rendered from the cursor when not given."""
    if context is None:
        context = cursor.context(counter) if cursor.context is not None else ""
    return build_prompt(
        cursor.prefix,
        cursor.suffix,
        count_tokens=counter,
        budget=budget,
        fim_tokens=backend.fim_tokens,
        context=context,
    )


def _prompt_within_budget(
    backend: Backend, cursor: Cursor, counter: TokenCounter
) -> tuple[Prompt, list[int] | None]:
    """The prompt, and the whole prompt's ids when it is the short one: a whole prompt
    that would make the model read more than ``prefill_tokens()`` tokens the KV cache lacks
    (a new position, another file) waits for a pause to be read (:mod:`crlhf_lsp.suggest`
    widens it); meanwhile the nearest ``SHORT_PROMPT`` tokens answer."""
    context = cursor.context(counter) if cursor.context is not None else ""
    whole = prompt_at(backend, cursor, counter, PROMPT_BUDGET, context)
    ids = counter.ids_of(whole.text)
    cached = backend.cached_tokens(ids, cursor.uri) if ids is not None else None
    limit = prefill_tokens()
    if ids is None or cached is None or not limit or len(ids) - cached <= limit:
        return whole, None
    short = prompt_at(backend, cursor, counter, SHORT_PROMPT, context)
    log.info(
        "crlhf: %d prompt tokens to read: the nearest %d first", len(ids) - cached, SHORT_PROMPT
    )
    return short, ids


def _timed_generate(
    backend: Backend, request: GenerationRequest, cancel: threading.Event, deadline: LineDeadline
) -> Generation:
    started = time.perf_counter()
    generation = backend.generate(request, cancel)
    if not generation.cancelled:
        log_call(
            time.perf_counter() - started,
            len(generation.prompt_token_ids or request.prompt_ids or []),
            generation.cached_tokens,
            len(generation.token_ids or []),
            deadline.hit,
        )
    return generation


class TokenCounter:
    """``count_tokens`` for ``build_prompt`` that keeps the last encoding it made, so that
    the model is handed the prompt's ids instead of tokenizing the same text again (a 1k-token
    prompt takes about a millisecond to tokenize on a laptop core)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.last: tuple[str, list[int]] | None = None

    def __call__(self, text: str) -> int:
        ids = self.backend.encode(text)
        if ids is None:
            return self.backend.count_tokens(text)
        self.last = (text, ids)
        return len(ids)

    def ids_of(self, text: str) -> list[int] | None:
        return self.last[1] if self.last is not None and self.last[0] == text else None


def accepted_command(record: CompletionRecord) -> types.Command:
    """The command every item carries: the client runs it when the user accepts."""
    return types.Command(title="crlhf: accepted", command=ACCEPTED, arguments=[record.id])
