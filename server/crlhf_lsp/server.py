"""The language server's state: ``CrlhfServer``; ``create_server`` registers its features.

Modules, one job each:

- :mod:`crlhf_lsp.features`: the LSP methods served (the table is there), short handlers;
- :mod:`crlhf_lsp.suggest`: a suggestion on screen, cached, or from the model (debounced);
- :mod:`crlhf_lsp.completion`: the cursor, typing through a suggestion, the model call;
- :mod:`crlhf_lsp.feedback`: events, accepted lines followed through edits, ratings;
- :mod:`crlhf_lsp.privacy`: the files that get no completion and send nothing;
- :mod:`crlhf_lsp.stdio`: LSP over stdio, read by the event loop itself;
- this one: settings and start-up, the backend, outbox and adapters, messages to the client.

Threads: the event loop only reads documents and answers; the model runs on one
``crlhf-model`` thread (so adapter swaps fall between generations), store calls on
``crlhf-io`` threads, the outbox and the adapter poller on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from crlhf_contract.client import StoreClient
from crlhf_contract.protocol import (
    M_ADAPTER_CHANGED,
    M_STATUS_CHANGED,
    AdapterChanged,
    Status,
)
from lsprotocol import types
from pygls.lsp.server import LanguageServer

from crlhf_lsp import __version__
from crlhf_lsp.adapters import AdapterManager, Swapped, timed
from crlhf_lsp.backends import Backend, create_backend
from crlhf_lsp.feedback import Feedback
from crlhf_lsp.outbox import Outbox
from crlhf_lsp.privacy import Exclusions, uri_path
from crlhf_lsp.settings import Settings
from crlhf_lsp.suggest import Suggester

__all__ = ["CrlhfServer", "create_server"]

log = logging.getLogger("crlhf_lsp")

STATUS_DELAY = 0.15
"""Seconds without a completion request starting or ending before the status they changed
is pushed: while the user types, requests come closer than this and nothing is pushed
between them (the push would cost the next answer its time); a suggestion quicker than this
never makes the status bar flicker "generating…", a slower one shows it after this long."""


class CrlhfServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("crlhf-lsp", __version__)
        self.settings = Settings()
        self.exclusions = Exclusions(roots=self._workspace_roots)
        self._told_excluded: set[str] = set()
        self.feedback = Feedback(
            self.document,
            lambda: self.outbox,
            excluded=self.excluded,
            retention_delays=lambda: self.settings.retentionDelays,
        )
        self.suggester = Suggester(self)
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="crlhf-model")
        self.io_threads = ThreadPoolExecutor(2, thread_name_prefix="crlhf-io")
        self.backend_future: Future[Backend] | None = None
        self.outbox: Outbox | None = None
        self.adapters: AdapterManager | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._adapter_client: StoreClient | None = None
        self._last_status: dict[str, Any] | None = None
        self._status_timer: asyncio.TimerHandle | None = None
        self.generating = 0
        """Completion requests waiting for the model now."""
        self.last_latency_ms: int | None = None
        self.inline_capable = False

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
        outbox = self.outbox
        return Status(
            model=model or None,
            modelLoading=backend is not None and not backend.done(),
            adapterVersion=self.adapters.current if self.adapters else None,
            adapterPublished=self.adapters.published if self.adapters else None,
            outboxPending=outbox.pending() if outbox else 0,
            outboxSetAside=outbox.set_aside_count() if outbox else 0,
            storeReachable=outbox.reachable if outbox else None,
            storeProblem=outbox.problem if outbox else None,
            tokenRefused=outbox.token_refused if outbox else False,
            enabled=self.settings.enabled,
            generating=self.generating > 0,
            lastLatencyMs=self.last_latency_ms,
            **self._tally(),
        ).model_dump()

    def _tally(self) -> dict[str, int]:
        tally = self.suggester.outcomes.tally
        return {
            "suggested": tally.shown,
            "accepted": tally.accepted,
            "partlyAccepted": tally.partial,
            "dismissed": tally.dismissed,
        }

    def status_changed(self) -> None:
        self._soon(self._push_status)

    def status_soon(self) -> None:
        """On the event loop: push the status once no request has started or ended for
        :data:`STATUS_DELAY`. A completion request pays a timer, never a notification."""
        if self.loop is None:
            return
        if self._status_timer is not None:
            self._status_timer.cancel()
        self._status_timer = self.loop.call_later(STATUS_DELAY, self._push_delayed)

    def _push_delayed(self) -> None:
        self._status_timer = None
        self._push_status()

    def _push_status(self) -> None:
        status = self.status()
        if status != self._last_status:
            self._last_status = status
            self.protocol.notify(M_STATUS_CHANGED, status)

    # --- settings and start-up ---------------------------------------------------------

    def apply_settings(self, new: Settings, *, initial: bool = False) -> None:
        old, self.settings = self.settings, new
        if initial or old.excludeGlobs != new.excludeGlobs:
            self.exclusions = Exclusions(new.excludeGlobs, roots=self._workspace_roots)
            self._told_excluded.clear()
        model_keys = ("backend", "model", "device", "openaiUrl", "openaiApiKey")
        if initial or any(getattr(old, k) != getattr(new, k) for k in model_keys):
            self._load_backend(new)
        opened = initial or old.outboxPath != new.outboxPath
        if opened:
            self._open_outbox(new.outboxPath)  # with a client of the new settings
        if initial or (old.storeUrl, old.token) != (new.storeUrl, new.token):
            # A fixed token or URL is tried at once, whatever the back-off had reached.
            if self.outbox is not None and not opened:
                self.outbox.set_client(self.store_client())
            self._adapter_client = self.store_client()
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
                public_key=lambda: self.settings.adapterPublicKey,
                on_change=self.status_changed,
            )
        elif old.adapterPublicKey != new.adapterPublicKey:
            self.adapters.refused.clear()  # judged against another key: judge them again
        self.adapters.start(new.adapterPollSeconds)
        self.status_changed()

    def _open_outbox(self, path: str) -> None:
        """Open the outbox at ``path``; a damaged file is moved aside by :class:`Outbox`, and
        one that cannot be opened at all (no permission, a folder in the way) leaves the
        server running without one, saying so, rather than failing ``initialize``."""
        if self.outbox is not None:
            self.outbox.stop()
            self.outbox = None
        try:
            self.outbox = Outbox(path, on_change=self.status_changed, warn=self.warn_user)
        except (OSError, sqlite3.Error) as exc:
            self.warn_user(
                f"crlhf: the outbox {path} cannot be opened ({exc}); ratings cannot be kept "
                "until the outboxPath setting names a writable file"
            )
            return
        self.outbox.set_client(self.store_client())
        self.outbox.start()

    def store_client(self) -> StoreClient | None:
        if not self.settings.storeUrl:
            return None
        return StoreClient(self.settings.storeUrl, self.settings.token or None, timeout=10.0)

    def _load_backend(self, settings: Settings) -> None:
        previous = self.backend_future

        def load() -> Backend:
            if previous is not None and previous.done() and previous.exception() is None:
                previous.result().close()
            gc.unfreeze()  # the previous model's cycles may be collected again
            backend = create_backend(settings)
            _freeze_heap()
            self.log_to_client(f"crlhf: model {backend.name} ready ({settings.backend})")
            return backend

        self.backend_future = self.model_thread.submit(load)
        self.suggester.invalidate()
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
        params = AdapterChanged(
            version=swapped.version, previous=swapped.previous, seconds=round(swapped.seconds, 4)
        ).model_dump()
        # Keyed by version too, so no stale hit meanwhile; on the loop, which owns the cache.
        self._soon(self.suggester.invalidate)
        self._soon(self.protocol.notify, M_ADAPTER_CHANGED, params)
        self.log_to_client(
            f"crlhf: adapter {swapped.version} loaded in {swapped.seconds * 1000:.0f} ms "
            f"(was {swapped.previous or 'the base model'})"
        )
        self.status_changed()

    # --- completion --------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        """The position encoding agreed with the client."""
        return str(self.workspace.position_encoding or "utf-16")

    def document(self, uri: str) -> Any:
        """The open document at ``uri``, or None."""
        return self.workspace.text_documents.get(uri)

    def excluded(self, uri: str) -> bool:
        """Whether ``uri`` is a file crlhf must not read or report on (said once per file)."""
        reason = self.exclusions.excluded(uri)
        if reason is None:
            return False
        if uri not in self._told_excluded:
            self._told_excluded.add(uri)
            self.log_to_client(
                f"crlhf: {uri} is excluded by {reason}: no completions, nothing sent"
            )
        self.suggester.exclude(uri)
        return True

    def _workspace_roots(self) -> list[str]:
        """The workspace folders' paths (``.crlhfignore`` files are found without them)."""
        try:
            workspace = self.workspace
        except RuntimeError:  # not initialized yet
            return []
        uris = [folder.uri for folder in workspace.folders.values()]
        if workspace.root_uri:
            uris.append(workspace.root_uri)
        return [p for p in map(uri_path, uris) if p]

    def forget(self, uri: str) -> None:
        """The document was closed."""
        self.suggester.forget(uri)
        self.feedback.forget(uri)


def _freeze_heap() -> None:
    """Take what is alive once the model is loaded (torch, transformers, the model's modules,
    the tokenizer) out of the garbage collector's sight. Otherwise every full collection
    walks it all: 100-200 ms with the tiny test model already, during which the server
    answers nothing, not even a keystroke typed through a suggestion."""
    gc.collect()
    gc.freeze()


def create_server() -> CrlhfServer:
    from crlhf_lsp.features import register  # it imports this module

    server = CrlhfServer()
    register(server)
    return server
