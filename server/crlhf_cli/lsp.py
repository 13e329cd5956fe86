"""Drive ``crlhf-lsp`` as an editor would: a real LSP client over stdio (pygls).

:class:`LspDriver` runs the client on an event loop of its own thread and offers blocking
methods, so the demo reads top to bottom. The server's stderr goes to a log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from crlhf_cli.services import DemoError

__all__ = ["Completion", "LspDriver", "plain"]

T = TypeVar("T")
ACCEPTED = "crlhf.accepted"


@dataclass(frozen=True)
class Completion:
    id: str  # the completion id crlhf-lsp gave it (the argument of crlhf.accepted)
    text: str
    seconds: float


def plain(value: Any) -> Any:
    """pygls hands back unknown results as named tuples: make them dicts."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class LspDriver:
    """``LspDriver(settings, log_path).start()``; then ``complete``, ``accept``, ``status``."""

    def __init__(self, settings: dict[str, Any], log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="crlhf-demo-lsp")
        self._thread.daemon = True
        self.client = LanguageClient("crlhf-demo", "0.1")
        # (monotonic time, wall-clock time, params) of each crlhf/adapterChanged
        self.adapter_changes: list[tuple[float, float, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self._opened = 0
        self._model_state: str | None = None  # "ready" or the load error
        self._model_event = threading.Event()

        @self.client.feature("crlhf/adapterChanged")
        def adapter_changed(params: Any) -> None:
            with self._changed:
                self.adapter_changes.append((time.monotonic(), time.time(), plain(params)))
                self._changed.notify_all()

        @self.client.feature("crlhf/statusChanged")
        def status_changed(params: Any) -> None:  # the demo asks crlhf/status itself
            pass

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params: types.LogMessageParams) -> None:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"[client] {params.message}\n")
            if params.message.startswith("crlhf: model ") and " ready" in params.message:
                self._model_state = "ready"
                self._model_event.set()
            elif "could not be loaded" in params.message:
                self._model_state = params.message
                self._model_event.set()

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params: types.ShowMessageParams) -> None:
            log_message(types.LogMessageParams(type=params.type, message=params.message))

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # --- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._run(self._start(), timeout=120)

    async def _start(self) -> None:
        # Whole prompts and whole completions: the editor's time budget and short first
        # prompt (crlhf_lsp.timebudget) would make the training data depend on the load
        # of the machine (at load 3, completions of one line: half the rated lines).
        whole = {"CRLHF_GENERATION_BUDGET_S": "0", "CRLHF_PREFILL_TOKENS": "0"}
        env = (
            whole | os.environ | {"PYTHONUNBUFFERED": "1", "CRLHF_DEMO_LSP_LOG": str(self.log_path)}
        )
        # sh keeps the server's stderr (model loading bars, logs) out of an unread pipe
        script = 'exec "$0" -m crlhf_lsp --stdio --log-level WARNING 2>>"$CRLHF_DEMO_LSP_LOG"'
        await self.client.start_io("sh", "-c", script, sys.executable, env=env)
        capabilities = types.ClientCapabilities(
            text_document=types.TextDocumentClientCapabilities(
                inline_completion=types.InlineCompletionClientCapabilities(),
            ),
            workspace=types.WorkspaceClientCapabilities(configuration=False),
        )
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities,
                initialization_options=self.settings,
                process_id=os.getpid(),
            )
        )
        self.client.initialized(types.InitializedParams())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):  # a server that is gone already is stopped
            self._run(self._stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await asyncio.sleep(0.2)
        await self.client.stop()

    # --- requests --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._run(self._request("crlhf/status"), timeout=60)

    async def _request(self, method: str, params: Any = None) -> Any:
        return plain(await self.client.protocol.send_request_async(method, params))

    def wait_ready(self, timeout: float = 900.0) -> dict[str, Any]:
        """Until the model is loaded (the status names it); returns the status."""
        if not self._model_event.wait(timeout):
            raise DemoError(
                f"crlhf-lsp did not load the model in {timeout:.0f} s; see {self.log_path}"
            )
        if self._model_state != "ready":
            raise DemoError(f"{self._model_state}; see {self.log_path}")
        return self.status()

    def complete(self, text: str, timeout: float = 600.0) -> Completion | None:
        """Open ``text`` as a new document and ask for ghost text at its end."""
        self._opened += 1
        uri = f"file:///crlhf-demo/problem_{self._opened}.py"
        lines = text.split("\n")
        position = types.Position(
            line=len(lines) - 1, character=len(lines[-1].encode("utf-16-le")) // 2
        )
        started = time.monotonic()
        items = self._run(self._complete(uri, text, position), timeout=timeout)
        seconds = time.monotonic() - started
        for item in items:
            command = getattr(item, "command", None)
            if command is not None and command.command == ACCEPTED and command.arguments:
                insert = item.insert_text
                insert = insert if isinstance(insert, str) else insert.value
                return Completion(str(command.arguments[0]), insert, seconds)
        return None

    async def _complete(self, uri: str, text: str, position: types.Position) -> list[Any]:
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        try:
            result = await self.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=position,
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            )
        finally:
            self.client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )
        if result is None:
            return []
        return list(result.items if hasattr(result, "items") else result)

    def command(self, name: str, *args: Any, timeout: float = 120.0) -> Any:
        params = types.ExecuteCommandParams(command=name, arguments=list(args))
        return plain(self._run(self.client.workspace_execute_command_async(params), timeout))

    def accept(self, completion: Completion) -> None:
        """What an editor does when the user takes the ghost text: run its command."""
        self.command(ACCEPTED, completion.id)

    def wait_outbox_empty(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("outboxPending", 0) == 0 and status.get("storeReachable") is not False:
                return
            time.sleep(0.3)
        raise DemoError(f"crlhf-lsp's outbox did not reach the store in {timeout:.0f} s")

    def wait_adapter(
        self, after: float, timeout: float
    ) -> tuple[float, float, dict[str, Any]] | None:
        """The first ``crlhf/adapterChanged`` at or after ``after`` (monotonic), or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for change in self.adapter_changes:
                    if change[0] >= after:
                        return change
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
