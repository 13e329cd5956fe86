"""The language server: ``CrlhfServer`` holds the state, ``create_server`` registers features.

LSP methods served (requests ⇢, notifications →, server-to-client ⇠):

==========================================  ================================================
``textDocument/inlineCompletion`` ⇢         ghost text from the model (LSP 3.18)
``textDocument/completion`` ⇢               the same for clients without inline completion
``textDocument/codeAction`` ⇢               👍/👎 quick fixes on lines of accepted completions
``textDocument/inlayHint`` ⇢                "👍 rated" / "👎 rated" after rated lines
``workspace/executeCommand`` ⇢              ``crlhf.accepted(id)``, ``crlhf.rate(id, line,
                                            vote, …)``, ``crlhf.nextReviewTask()``,
                                            ``crlhf.checkAdapter()``, ``crlhf.toggleEnabled()``
``crlhf/status`` ⇢                          ``{model, adapterVersion, outboxPending,
                                            storeReachable, enabled}``
``crlhf/didShowCompletion`` →               ``{completionId}``
``crlhf/didPartiallyAcceptCompletion`` →    ``{completionId, acceptedLength}``
``crlhf/statusChanged`` ⇠                   the status, whenever it changes
``crlhf/adapterChanged`` ⇠                  ``{version, previous, seconds}`` after a swap
==========================================  ================================================

Threads: the event loop only reads documents and answers; the model runs on one
``crlhf-model`` thread (so adapter swaps fall between generations), store calls on
``crlhf-io`` threads, the outbox and the adapter poller on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlhf_store.client import StoreClient, StoreError
from crlhf_store.schemas import CompletionIn, EventIn, EventKind, RatingIn
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from crlhf_lsp import __version__
from crlhf_lsp.adapters import AdapterManager, Swapped, timed
from crlhf_lsp.backends import Backend, GenerationRequest, create_backend
from crlhf_lsp.errors import CrlhfLspError, OutboxFull
from crlhf_lsp.outbox import Outbox
from crlhf_lsp.postprocess import Cutter
from crlhf_lsp.prompt import build_prompt
from crlhf_lsp.review import next_review_task
from crlhf_lsp.settings import Settings
from crlhf_lsp.tracking import Change, Tracker, to_index

log = logging.getLogger("crlhf_lsp")

PROMPT_BUDGET = 1536
"""Tokens of prefix (+ suffix) sent to the model."""
REMEMBERED_COMPLETIONS = 1024
RATE = "crlhf.rate"
ACCEPTED = "crlhf.accepted"


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

    @property
    def id(self) -> str:
        return str(self.row.id)


@dataclass
class ServerState:
    completions: OrderedDict[str, CompletionRecord] = field(default_factory=OrderedDict)
    suggestions: dict[str, CompletionRecord] = field(default_factory=dict)
    """The last suggestion per document, answered from while the user types it."""
    cancels: dict[str, threading.Event] = field(default_factory=dict)
    pending_accepts: dict[str, list[tuple[CompletionRecord, str]]] = field(default_factory=dict)
    votes: dict[tuple[str, int], int] = field(default_factory=dict)


class CrlhfServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("crlhf-lsp", __version__)
        self.settings = Settings()
        self.state = ServerState()
        self.tracker = Tracker()
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="crlhf-model")
        self.io_threads = ThreadPoolExecutor(2, thread_name_prefix="crlhf-io")
        self.backend_future: Future[Backend] | None = None
        self.outbox: Outbox | None = None
        self.adapters: AdapterManager | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._adapter_client: StoreClient | None = None
        self._last_status: dict[str, Any] | None = None
        self._inline_capable = False

    # --- messages to the client (safe from any thread) ---------------------------------

    def _soon(self, fn: Any, *args: Any) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed since the check
            self.loop.call_soon_threadsafe(fn, *args)

    def log_to_client(self, message: str, error: bool = False) -> None:
        (log.error if error else log.info)(message)
        kind = types.MessageType.Error if error else types.MessageType.Info
        self._soon(self.window_log_message, types.LogMessageParams(type=kind, message=message))

    def warn_user(self, message: str) -> None:
        log.warning(message)
        params = types.ShowMessageParams(type=types.MessageType.Warning, message=message)
        self._soon(self.window_show_message, params)

    def status(self) -> dict[str, Any]:
        backend = self.backend_future
        model = self.settings.model
        if backend is not None and backend.done() and backend.exception() is None:
            model = backend.result().name
        return {
            "model": model or None,
            "adapterVersion": self.adapters.current if self.adapters else None,
            "outboxPending": self.outbox.pending() if self.outbox else 0,
            "storeReachable": self.outbox.reachable if self.outbox else None,
            "enabled": self.settings.enabled,
        }

    def status_changed(self) -> None:
        self._soon(self._push_status)

    def _push_status(self) -> None:
        status = self.status()
        if status != self._last_status:
            self._last_status = status
            self.protocol.notify("crlhf/statusChanged", status)

    # --- settings and start-up ---------------------------------------------------------

    def apply_settings(self, new: Settings, *, initial: bool = False) -> None:
        old, self.settings = self.settings, new
        model_keys = ("backend", "model", "device", "openaiUrl")
        if initial or any(getattr(old, k) != getattr(new, k) for k in model_keys):
            self._load_backend(new)
        if initial or old.outboxPath != new.outboxPath:
            if self.outbox is not None:
                self.outbox.stop()
            self.outbox = Outbox(new.outboxPath, on_change=self.status_changed, warn=self.warn_user)
            self.outbox.start()
        if initial or (old.storeUrl, old.token) != (new.storeUrl, new.token):
            assert self.outbox is not None
            self.outbox.set_client(self._store_client())
            self._adapter_client = self._store_client()
        if self.adapters is None:
            cache = Path(new.outboxPath).parent / "adapters"
            self.adapters = AdapterManager(
                cache,
                client=lambda: self._adapter_client,
                swap=self._swap_adapter,
                announce=self._announce_adapter,
                log=self.log_to_client,
                wants_files=self._backend_wants_files,
                base_model=lambda: self.settings.model,
            )
        self.adapters.start(new.adapterPollSeconds)
        self.status_changed()

    def _store_client(self) -> StoreClient | None:
        if not self.settings.storeUrl:
            return None
        return StoreClient(self.settings.storeUrl, self.settings.token or None, timeout=10.0)

    def _load_backend(self, settings: Settings) -> None:
        previous = self.backend_future

        def load() -> Backend:
            if previous is not None and previous.done() and previous.exception() is None:
                previous.result().close()
            backend = create_backend(settings)
            self.log_to_client(f"crlhf: model {backend.name} ready ({settings.backend})")
            return backend

        self.backend_future = self.model_thread.submit(load)
        if self.adapters is not None:
            self.adapters.current = None
            self.adapters.refused.clear()
        self.backend_future.add_done_callback(self._backend_loaded)

    def _backend_loaded(self, future: Future[Backend]) -> None:
        exc = future.exception()
        if exc is not None:
            self.warn_user(f"crlhf: the model could not be loaded: {exc}")
        self.status_changed()

    def _backend_wants_files(self) -> bool:
        future = self.backend_future
        return future is None or future.exception() is not None or future.result().adapter_files

    def shutdown_all(self) -> None:
        if self.adapters is not None:
            self.adapters.stop()
        if self.outbox is not None:
            self.outbox.stop()
        self.model_thread.shutdown(wait=False, cancel_futures=True)
        self.io_threads.shutdown(wait=False, cancel_futures=True)

    # --- adapters ----------------------------------------------------------------------

    def _swap_adapter(self, folder: Path, version: str) -> float:
        assert self.backend_future is not None
        backend = self.backend_future.result()
        if backend.adapter_files:
            backend.check_adapter(folder)
        return self.model_thread.submit(
            timed, lambda: backend.load_adapter(folder, version)
        ).result()

    def _announce_adapter(self, swapped: Swapped) -> None:
        params = {
            "version": swapped.version,
            "previous": swapped.previous,
            "seconds": round(swapped.seconds, 4),
        }
        self._soon(self.protocol.notify, "crlhf/adapterChanged", params)
        self.log_to_client(
            f"crlhf: adapter {swapped.version} loaded in {swapped.seconds * 1000:.0f} ms "
            f"(was {swapped.previous or 'the base model'})"
        )
        self.status_changed()

    # --- completion --------------------------------------------------------------------

    def cursor(self, uri: str, position: types.Position) -> Cursor | None:
        """The document around ``position``; None for unknown documents or lines."""
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            log.info("completion asked for %s, which is not open", uri)
            return None
        lines = doc.lines
        if position.line < 0 or position.line > len(lines) or position.character < 0:
            return None
        text = lines[position.line] if position.line < len(lines) else ""
        line_text = text.rstrip("\r\n")
        encoding = str(self.workspace.position_encoding or "utf-16")
        col = to_index(line_text, position.character, encoding)
        offset = sum(len(line) for line in lines[: position.line]) + col
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

    def typed_through(self, cursor: Cursor) -> tuple[CompletionRecord, str] | None:
        """The rest of the last suggestion, if the user has been typing it."""
        record = self.state.suggestions.get(cursor.uri)
        if record is None or record.line != cursor.line or record.line_suffix != cursor.line_suffix:
            return None
        if record.around != _around(cursor):  # the document changed elsewhere
            return None
        if not cursor.line_prefix.startswith(record.line_prefix):
            return None
        typed = cursor.line_prefix[len(record.line_prefix) :]
        if len(typed) < len(record.text) and record.text.startswith(typed):
            return record, record.text[len(typed) :]
        return None

    async def complete(self, cursor: Cursor) -> tuple[CompletionRecord, str] | None:
        if not self.settings.enabled or self.backend_future is None:
            return None
        hit = self.typed_through(cursor)
        if hit is not None:
            return hit
        cancel = threading.Event()
        older = self.state.cancels.get(cursor.uri)
        if older is not None:
            older.set()  # a newer request for the document: the older one stops
        self.state.cancels[cursor.uri] = cancel
        try:
            backend = await asyncio.wrap_future(self.backend_future)
            loop = asyncio.get_running_loop()
            settings = self.settings
            record = await loop.run_in_executor(
                self.model_thread, self._generate, backend, settings, cursor, cancel
            )
        except asyncio.CancelledError:
            cancel.set()
            raise
        except CrlhfLspError as exc:
            self.log_to_client(f"crlhf: no completion: {exc}", error=True)
            return None
        finally:
            if self.state.cancels.get(cursor.uri) is cancel:
                del self.state.cancels[cursor.uri]
        if record is None:
            return None
        self._remember(record)
        return record, record.text

    def _generate(
        self, backend: Backend, settings: Settings, cursor: Cursor, cancel: threading.Event
    ) -> CompletionRecord | None:
        if cancel.is_set():
            return None
        prompt = build_prompt(
            cursor.prefix,
            cursor.suffix,
            count_tokens=backend.count_tokens,
            budget=PROMPT_BUDGET,
            fim_tokens=backend.fim_tokens,
        )
        cutter = Cutter(cursor.line_prefix, cursor.line_suffix)
        request = GenerationRequest(
            prompt=prompt.text,
            max_tokens=settings.maxTokens,
            temperature=settings.temperature,
            cache_key=cursor.uri,
            should_stop=cutter.is_complete,
            stop=["\n"] if cutter.single_line else ["\n\n\n"],
        )
        generation = backend.generate(request, cancel)
        if generation.cancelled:
            return None
        text = cutter.finish(generation.text, cursor.suffix)
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
        return CompletionRecord(
            cursor.uri,
            cursor.line,
            cursor.line_prefix,
            cursor.line_suffix,
            text,
            row,
            around=_around(cursor),
        )

    def _remember(self, record: CompletionRecord) -> None:
        self.state.completions[record.id] = record
        self.state.suggestions[record.uri] = record
        while len(self.state.completions) > REMEMBERED_COMPLETIONS:
            self.state.completions.popitem(last=False)

    # --- events, acceptance, ratings ---------------------------------------------------

    def _queue(self, put: Any) -> bool:
        if self.outbox is None:
            return False
        try:
            put()
        except OutboxFull:
            return False
        return True

    def _queue_completion(self, record: CompletionRecord | None) -> None:
        if record is not None and not record.queued and self.outbox is not None:
            record.queued = self._queue(lambda: self.outbox.put_completion(record.row))

    def event(self, completion_id: str, kind: EventKind, accepted_chars: int | None = None) -> None:
        cid = _uuid(completion_id)
        record = self.state.completions.get(str(cid))
        self._queue_completion(record)
        row = EventIn(
            event_id=uuid.uuid4(), completion_id=cid, kind=kind, accepted_chars=accepted_chars
        )
        self._queue(lambda: self.outbox.put_event(row) if self.outbox else None)
        if record is not None and kind in ("accepted", "partial"):
            text = record.text if accepted_chars is None else record.text[:accepted_chars]
            self._track(record, text)

    def _track(self, record: CompletionRecord, text: str) -> None:
        """Follow the accepted ``text`` in its document (now, or once its edit arrives)."""
        if not text.strip():
            return
        if not self._locate(record, text):
            self.state.pending_accepts.setdefault(record.uri, []).append((record, text))

    def _locate(self, record: CompletionRecord, text: str) -> bool:
        doc = self.workspace.text_documents.get(record.uri)
        if doc is None:
            return False
        source = doc.source
        lines = doc.lines
        expected = sum(len(line) for line in lines[: record.line]) + len(record.line_prefix)
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
        self.tracker.track(record.uri, record.id, first, texts)
        record.tracked = True
        return True

    def rate(self, triples: list[tuple[uuid.UUID, int, int]]) -> int:
        rated = 0
        for cid, line, vote in triples:
            self._queue_completion(self.state.completions.get(str(cid)))
            row = RatingIn(event_id=uuid.uuid4(), completion_id=cid, line=line, label=vote)
            if self._queue(lambda row=row: self.outbox.put_rating(row) if self.outbox else None):
                rated += 1
                self.state.votes[(str(cid), line)] = vote
        return rated

    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        doc = self.workspace.text_documents.get(uri)
        encoding = str(self.workspace.position_encoding or "utf-16")
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                step = Change(change.text, (start.line, start.character), (end.line, end.character))
            else:
                step = Change(change.text)
            lines = [line.rstrip("\r\n") for line in doc.lines] if doc is not None else []
            self.tracker.apply(uri, step, lines, encoding)
        pending = self.state.pending_accepts.pop(uri, [])
        still = [(r, t) for r, t in pending if not self._locate(r, t)]
        if still:
            self.state.pending_accepts[uri] = still[-16:]

    def code_actions(self, uri: str, first: int, last: int) -> list[types.CodeAction]:
        tracked = self.tracker.at(uri, first, last)
        if not tracked:
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


def _rated_hints(ls: CrlhfServer, uri: str, first: int, last: int) -> list[types.InlayHint]:
    doc = ls.workspace.text_documents.get(uri)
    if doc is None:
        return []
    lines = doc.lines
    hints = []
    for t in ls.tracker.at(uri, first, last):
        vote = ls.state.votes.get((t.completion_id, t.index))
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


def _around(cursor: Cursor) -> tuple[str, str]:
    head = cursor.prefix[: len(cursor.prefix) - len(cursor.line_prefix)]
    return head, cursor.suffix[len(cursor.line_suffix) :]


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise JsonRpcInvalidParams.of(ValueError(f"{value!r} is not a completion id")) from None


def _field(params: Any, name: str) -> Any:
    if isinstance(params, dict):
        return params.get(name)
    return getattr(params, name, None)


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
        triples.append((_uuid(cid), line, int(vote)))
    return triples


def create_server() -> CrlhfServer:
    server = CrlhfServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: CrlhfServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_event_loop()
        caps = params.capabilities.text_document
        ls._inline_capable = bool(caps and caps.inline_completion is not None)
        try:
            settings = Settings().merged(params.initialization_options)
        except CrlhfLspError as exc:
            ls.warn_user(f"crlhf: {exc}; using the defaults")
            settings = Settings()
        ls.apply_settings(settings, initial=True)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CrlhfServer, *args: Any) -> None:
        ls.shutdown_all()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(
        ls: CrlhfServer, params: types.DidChangeConfigurationParams
    ) -> None:
        try:
            ls.apply_settings(ls.settings.merged(params.settings))
        except CrlhfLspError as exc:
            ls.warn_user(f"crlhf: {exc}; keeping the previous settings")

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CrlhfServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.did_change(params)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CrlhfServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.tracker.forget(uri)
        ls.state.suggestions.pop(uri, None)
        ls.state.pending_accepts.pop(uri, None)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CrlhfServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        cursor = ls.cursor(params.text_document.uri, params.position)
        result = await ls.complete(cursor) if cursor is not None else None
        if result is None:
            return types.InlineCompletionList(items=[])
        record, text = result
        pos = params.position
        item = types.InlineCompletionItem(
            insert_text=text,
            range=types.Range(start=pos, end=pos),
            command=types.Command(title="crlhf: accepted", command=ACCEPTED, arguments=[record.id]),
        )
        return types.InlineCompletionList(items=[item])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(
        ls: CrlhfServer, params: types.CompletionParams
    ) -> types.CompletionList | None:
        if ls._inline_capable:
            return None  # the client shows ghost text; a second list would duplicate it
        cursor = ls.cursor(params.text_document.uri, params.position)
        result = await ls.complete(cursor) if cursor is not None else None
        if result is None:
            return types.CompletionList(is_incomplete=True, items=[])
        record, text = result
        label = text.strip().split("\n", 1)[0][:60]
        item = types.CompletionItem(
            label=label or text[:60],
            kind=types.CompletionItemKind.Text,
            detail="crlhf",
            insert_text=text,
            insert_text_format=types.InsertTextFormat.PlainText,
            command=types.Command(title="crlhf: accepted", command=ACCEPTED, arguments=[record.id]),
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: CrlhfServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        start, end = params.range.start, params.range.end
        last = end.line - 1 if end.line > start.line and end.character == 0 else end.line
        return ls.code_actions(params.text_document.uri, start.line, last)

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
    def inlay_hint(ls: CrlhfServer, params: types.InlayHintParams) -> list[types.InlayHint]:
        """Rated lines of accepted completions end with a discreet "👍 rated" / "👎 rated"."""
        rng = params.range
        return _rated_hints(ls, params.text_document.uri, rng.start.line, rng.end.line)

    @server.command(ACCEPTED)
    def accepted(ls: CrlhfServer, *args: Any) -> None:
        if not args:
            raise JsonRpcInvalidParams.of(ValueError("crlhf.accepted takes a completion id"))
        ls.event(args[0], "accepted")

    @server.feature("crlhf/didShowCompletion")
    def did_show(ls: CrlhfServer, params: Any) -> None:
        if (cid := _field(params, "completionId")) is not None:
            ls.event(cid, "shown")

    @server.feature("crlhf/didPartiallyAcceptCompletion")
    def did_partially_accept(ls: CrlhfServer, params: Any) -> None:
        cid, length = _field(params, "completionId"), _field(params, "acceptedLength")
        if cid is not None and isinstance(length, int) and length >= 0:
            ls.event(cid, "partial", accepted_chars=length)

    @server.command(RATE)
    def rate(ls: CrlhfServer, *args: Any) -> dict[str, int]:
        return {"rated": ls.rate(parse_rate_args(args))}

    @server.command("crlhf.nextReviewTask")
    async def review(ls: CrlhfServer, *args: Any) -> dict[str, Any] | None:
        client = ls._store_client()
        if client is None:
            ls.warn_user("crlhf: set storeUrl to fetch review tasks")
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(
                ls.io_threads, next_review_task, client
            )
        except StoreError as exc:
            ls.log_to_client(f"crlhf: could not fetch a review task: {exc}", error=True)
            return None
        finally:
            client.close()

    @server.command("crlhf.checkAdapter")
    async def check_adapter(ls: CrlhfServer, *args: Any) -> dict[str, Any]:
        assert ls.adapters is not None
        swapped = await asyncio.get_running_loop().run_in_executor(ls.io_threads, ls.adapters.check)
        return {"version": ls.adapters.current, "swapped": swapped is not None}

    @server.command("crlhf.toggleEnabled")
    def toggle(ls: CrlhfServer, *args: Any) -> dict[str, bool]:
        enabled = bool(args[0]) if args else not ls.settings.enabled
        ls.apply_settings(ls.settings.merged({"enabled": enabled}))
        return {"enabled": enabled}

    @server.feature("crlhf/status")
    def status(ls: CrlhfServer, *args: Any) -> dict[str, Any]:
        return ls.status()

    return server
