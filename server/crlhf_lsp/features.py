"""The LSP methods crlhf-lsp serves, each a short handler registered on a ``CrlhfServer``
(pygls reads the handlers' annotations, so ``CrlhfServer`` is imported for real).

Requests ⇢, notifications →, server-to-client ⇠:

==========================================  ================================================
``textDocument/inlineCompletion`` ⇢         ghost text from the model (LSP 3.18)
``textDocument/completion`` ⇢               the same for clients without inline completion
``textDocument/codeAction`` ⇢               👍/👎 quick fixes on lines of accepted completions
``textDocument/inlayHint`` ⇢                "👍 rated" / "👎 rated" after rated lines
``workspace/executeCommand`` ⇢              ``crlhf.accepted(id)``, ``crlhf.rate(id, line,
                                            vote, …)``, ``crlhf.nextReviewTask()``,
                                            ``crlhf.checkAdapter()``, ``crlhf.checkToken(t?)``,
                                            ``crlhf.toggleEnabled()``,
                                            ``crlhf.setAside()``, ``crlhf.requeue(key?…)``
``crlhf/status`` ⇢                          :class:`crlhf_contract.protocol.Status`:
                                            model, adapter, outbox, store, in flight
``crlhf/completionStats`` ⇢                 :class:`crlhf_contract.protocol.CompletionStats`:
                                            model calls, cache hits, debounce
``crlhf/didShowCompletion`` →               ``{completionId}``
``crlhf/didPartiallyAcceptCompletion`` →    ``{completionId, acceptedLength}``
``crlhf/statusChanged`` ⇠                   the status, whenever it changes
``crlhf/adapterChanged`` ⇠                  ``{version, previous, seconds}`` after a swap
==========================================  ================================================
"""

from __future__ import annotations

import asyncio
from typing import Any

from crlhf_contract.client import StoreError
from crlhf_contract.protocol import (
    CMD_CHECK_ADAPTER,
    CMD_CHECK_TOKEN,
    CMD_NEXT_REVIEW_TASK,
    CMD_REQUEUE,
    CMD_SET_ASIDE,
    CMD_TOGGLE_ENABLED,
    M_COMPLETION_STATS,
    M_DID_PARTIALLY_ACCEPT,
    M_DID_SHOW,
    M_STATUS,
    AdapterCheck,
    Requeued,
    SetAsideRow,
)
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from crlhf_lsp.completion import ACCEPTED, accepted_command
from crlhf_lsp.errors import CrlhfLspError
from crlhf_lsp.feedback import RATE, parse_rate_args
from crlhf_lsp.review import next_review_task
from crlhf_lsp.server import CrlhfServer
from crlhf_lsp.settings import Settings
from crlhf_lsp.signin import check_token


def register(server: CrlhfServer) -> None:
    _lifecycle(server)
    _completion(server)
    _feedback(server)
    _store_commands(server)
    _commands(server)


def _lifecycle(server: CrlhfServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: CrlhfServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_event_loop()
        caps = params.capabilities.text_document
        ls.inline_capable = bool(caps and caps.inline_completion is not None)
        try:
            settings = Settings().merged(params.initialization_options)
        except CrlhfLspError as exc:
            ls.warn_user(f"crlhf: {exc}; using the defaults")
            settings = _defaults()
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
        ls.feedback.did_change(params.text_document.uri, params.content_changes, ls.encoding)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CrlhfServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.suggester.pick(params.text_document.uri)  # the ring buffer, when it is on
        ls.suggester.warm(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: CrlhfServer, params: types.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.suggester.pick(uri, ls.suggester.last_line(uri))
        ls.suggester.warm(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CrlhfServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)


def _completion(server: CrlhfServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CrlhfServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        result = await ls.suggester.complete(params.text_document.uri, params.position)
        if result is None:
            return types.InlineCompletionList(items=[])
        record, text = result
        pos = params.position
        item = types.InlineCompletionItem(
            insert_text=text,
            range=types.Range(start=pos, end=pos),
            command=accepted_command(record),
        )
        return types.InlineCompletionList(items=[item])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(
        ls: CrlhfServer, params: types.CompletionParams
    ) -> types.CompletionList | None:
        if ls.inline_capable:
            return None  # the client shows ghost text; a second list would duplicate it
        result = await ls.suggester.complete(params.text_document.uri, params.position)
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
            command=accepted_command(record),
        )
        return types.CompletionList(is_incomplete=True, items=[item])


def _feedback(server: CrlhfServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: CrlhfServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        start, end = params.range.start, params.range.end
        last = end.line - 1 if end.line > start.line and end.character == 0 else end.line
        return ls.feedback.code_actions(params.text_document.uri, start.line, last)

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
    def inlay_hint(ls: CrlhfServer, params: types.InlayHintParams) -> list[types.InlayHint]:
        """Rated lines of accepted completions end with a discreet "👍 rated" / "👎 rated"."""
        rng = params.range
        return ls.feedback.rated_hints(params.text_document.uri, rng.start.line, rng.end.line)

    @server.command(ACCEPTED)
    def accepted(ls: CrlhfServer, *args: Any) -> None:
        if not args:
            raise JsonRpcInvalidParams.of(ValueError("crlhf.accepted takes a completion id"))
        ls.feedback.event(args[0], "accepted")
        ls.suggester.accepted(str(args[0]))

    @server.feature(M_DID_SHOW)
    def did_show(ls: CrlhfServer, params: Any) -> None:
        if (cid := _field(params, "completionId")) is not None:
            ls.feedback.event(cid, "shown")

    @server.feature(M_DID_PARTIALLY_ACCEPT)
    def did_partially_accept(ls: CrlhfServer, params: Any) -> None:
        cid, length = _field(params, "completionId"), _field(params, "acceptedLength")
        if cid is not None and isinstance(length, int) and length >= 0:
            ls.feedback.event(cid, "partial", accepted_chars=length)
            ls.suggester.accepted(str(cid), whole=False)

    @server.command(RATE)
    def rate(ls: CrlhfServer, *args: Any) -> dict[str, int]:
        return {"rated": ls.feedback.rate(parse_rate_args(args))}


def _store_commands(server: CrlhfServer) -> None:
    """Commands that ask the store something now, on an I/O thread."""

    @server.command(CMD_NEXT_REVIEW_TASK)
    async def review(ls: CrlhfServer, *args: Any) -> dict[str, Any] | None:
        client = ls.store_client()
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

    @server.command(CMD_CHECK_ADAPTER)
    async def check_adapter(ls: CrlhfServer, *args: Any) -> dict[str, Any]:
        assert ls.adapters is not None
        checked = await asyncio.get_running_loop().run_in_executor(
            ls.io_threads, ls.adapters.check_now
        )
        return AdapterCheck(
            version=checked.version,
            swapped=checked.swapped is not None,
            outcome=checked.outcome,
            latest=checked.latest,
            message=checked.message,
        ).model_dump()

    @server.command(CMD_CHECK_TOKEN)
    async def who_am_i(ls: CrlhfServer, *args: Any) -> dict[str, Any]:
        """Whom the store knows the token as: the one given, else the settings' token."""
        token = str(args[0]) if args and args[0] else ls.settings.token
        checked = await asyncio.get_running_loop().run_in_executor(
            ls.io_threads, check_token, ls.settings.storeUrl, token
        )
        return checked.model_dump()


def _commands(server: CrlhfServer) -> None:
    @server.command(CMD_TOGGLE_ENABLED)
    def toggle(ls: CrlhfServer, *args: Any) -> dict[str, bool]:
        enabled = bool(args[0]) if args else not ls.settings.enabled
        ls.apply_settings(ls.settings.merged({"enabled": enabled}))
        return {"enabled": enabled}

    @server.command(CMD_SET_ASIDE)
    def set_aside(ls: CrlhfServer, *args: Any) -> list[dict[str, Any]]:
        rows = ls.outbox.set_aside() if ls.outbox else []
        return [
            SetAsideRow(
                kind=r.kind, key=r.key, reason=r.reason, setAsideAt=r.set_aside_at
            ).model_dump()
            for r in rows
        ]

    @server.command(CMD_REQUEUE)
    def requeue(ls: CrlhfServer, *args: Any) -> dict[str, Any]:
        """All set-aside rows, or those whose keys are given (strings, or one list)."""
        keys = [str(k) for a in args for k in (a if isinstance(a, list) else [a])]
        count = ls.outbox.requeue(keys or None) if ls.outbox else 0
        return Requeued(requeued=count).model_dump()

    @server.feature(M_STATUS)
    def status(ls: CrlhfServer, *args: Any) -> dict[str, Any]:
        return ls.status()

    @server.feature(M_COMPLETION_STATS)
    def completion_stats(ls: CrlhfServer, *args: Any) -> dict[str, Any]:
        return ls.suggester.stats().model_dump()


def _defaults() -> Settings:
    """The defaults, or, when the environment's are not usable either (an insecure
    ``$CRLHF_STORE_URL``, a bad ``$CRLHF_ADAPTER_PUBLIC_KEY``), the defaults without a
    store: ratings then wait in the outbox and no adapter is fetched unverified."""
    try:
        return Settings().checked()
    except CrlhfLspError:
        return Settings(storeUrl="")


def _field(params: Any, name: str) -> Any:
    if isinstance(params, dict):
        return params.get(name)
    return getattr(params, name, None)
