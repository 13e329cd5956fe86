"""Drive a real ``crlhf-lsp`` process over stdio with pytest-lsp's client (tests and bench).

``async with lsp_session(settings) as client:`` starts ``python -m crlhf_lsp --stdio``, sends
``initialize`` with :data:`CAPABILITIES` (pytest-lsp's bundled profiles do not declare inline
completion) and ``settings`` as ``initializationOptions``, and shuts it down afterwards.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crlhf_cli.lsp import plain
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

CAPABILITIES = types.ClientCapabilities(
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(),
        inline_completion=types.InlineCompletionClientCapabilities(),
        inlay_hint=types.InlayHintClientCapabilities(),
        completion=types.CompletionClientCapabilities(),
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(
                    value_set=[types.CodeActionKind.QuickFix]
                )
            )
        ),
    ),
    workspace=types.WorkspaceClientCapabilities(
        did_change_configuration=types.DidChangeConfigurationClientCapabilities(),
        execute_command=types.ExecuteCommandClientCapabilities(),
    ),
)


def settings_for(tmp: Path, model: Path | str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "local",
        "model": str(model),
        "outboxPath": str(tmp / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
        "maxTokens": 48,
        "storeUrl": "",
    } | extra


@contextlib.asynccontextmanager
async def lsp_session(
    settings: dict[str, Any],
    *,
    capabilities: types.ClientCapabilities = CAPABILITIES,
    env: dict[str, str] | None = None,
) -> AsyncIterator[LanguageClient]:
    client = make_test_lsp_client()  # records window/logMessage, showMessage …
    # No generation time budget unless a test sets one: what the tiny model says must not
    # depend on the machine's load (crlhf_lsp.timebudget).
    full_env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CRLHF_GENERATION_BUDGET_S": "0",
    }
    await client.start_io(sys.executable, "-m", "crlhf_lsp", "--stdio", env=full_env | (env or {}))
    try:
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities,
                initialization_options=settings,
                process_id=os.getpid(),
            )
        )
        client.init_result = result  # type: ignore[attr-defined]
        yield client
        await asyncio.wait_for(client.shutdown_session(), 60)
    finally:
        server = client._server
        if server is not None and server.returncode is None:
            server.kill()  # a failed test: do not wait for a polite exit
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 30)


def open_doc(client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=text
            )
        )
    )


def edit(
    client: LanguageClient,
    uri: str,
    version: int,
    start: tuple[int, int],
    end: tuple[int, int],
    text: str,
) -> None:
    """One incremental change: replace ``start..end`` (line, character) with ``text``."""
    rng = types.Range(
        start=types.Position(line=start[0], character=start[1]),
        end=types.Position(line=end[0], character=end[1]),
    )
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=rng, text=text)],
        )
    )


async def inline(client: LanguageClient, uri: str, line: int, character: int) -> list[Any]:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    if result is None:
        return []
    return list(result.items if hasattr(result, "items") else result)


async def command(client: LanguageClient, name: str, *args: Any) -> Any:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))
    )
    return plain(result)


async def request(client: LanguageClient, method: str, params: Any = None) -> Any:
    result = await client.protocol.send_request_async(method, params)
    return plain(result)


async def code_actions(client: LanguageClient, uri: str, first: int, last: int) -> list[Any]:
    """The ``crlhf.rate`` commands offered on lines ``first..last`` as (title, arguments).

    lsprotocol's client-side converter may turn a CodeAction that carries a command into a
    Command: both shapes are read here."""
    result = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(
                start=types.Position(line=first, character=0),
                end=types.Position(line=last, character=0),
            ),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    found = []
    for item in result or []:
        cmd = item.command if isinstance(getattr(item, "command", None), types.Command) else item
        name, args = cmd.command, list(cmd.arguments or [])
        if isinstance(name, str) and name.startswith("{"):
            # The converter read a CodeAction as a Command whose ``command`` is the repr of
            # the CodeAction's command object: read that object back.
            inner = ast.literal_eval(name)
            name, args = inner["command"], list(inner.get("arguments") or [])
        found.append((item.title, name, args))
    return found


async def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met in {timeout} s")
        await asyncio.sleep(interval)


class RecordingOutbox:
    """The outbox's write side as crlhf_lsp.feedback uses it, each row recorded in order as
    ``(kind, row)``: for unit tests of the feedback and retention logic without a file."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, Any]] = []

    def put_completion(self, row: Any) -> None:
        self.rows.append(("completion", row))

    def put_event(self, row: Any) -> None:
        self.rows.append(("event", row))

    def put_rating(self, row: Any) -> None:
        self.rows.append(("rating", row))
