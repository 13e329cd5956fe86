"""Where a suggestion comes from, cheapest first: the one on screen that the user is typing
through, the :class:`~crlhf_lsp.cache.SuggestionCache`, else the model once the
:class:`~crlhf_lsp.debounce.Debouncer` has let the keystrokes settle.

Runs on the event loop; only the model call goes to the model thread. A request arriving
for a document stops the model work of the older one at once (its text would be stale)
and supersedes it if it is still waiting out the debounce.

:class:`CompletionStats` counts where answers came from (``crlhf/completionStats``): the
replay bench and the tests read the model calls there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crlhf_contract.protocol import CompletionStats
from lsprotocol import types

from crlhf_lsp.backends import Backend
from crlhf_lsp.cache import CAPACITY, SuggestionCache
from crlhf_lsp.completion import (
    PROMPT_BUDGET,
    CompletionRecord,
    Cursor,
    after_accept,
    generate,
    read_cursor,
    typed_through,
)
from crlhf_lsp.debounce import Debouncer
from crlhf_lsp.errors import CrlhfLspError
from crlhf_lsp.outcome import Outcome, Outcomes
from crlhf_lsp.privacy import uri_path
from crlhf_lsp.ring import RingBuffer
from crlhf_lsp.timebudget import WIDEN_AFTER_S
from crlhf_lsp.warmup import warm_cursor, warm_line, warm_prompt

if TYPE_CHECKING:
    from crlhf_lsp.server import CrlhfServer

__all__ = ["Counts", "Suggester"]

log = logging.getLogger("crlhf_lsp")

RING_BUDGET = PROMPT_BUDGET // 3
"""Most prompt tokens the ring buffer's code may take (the rest stays the document's)."""


@dataclass
class Counts:
    """Completion requests by how they were answered (since the server started)."""

    requests: int = 0
    typed_through: int = 0
    cache_hits: int = 0
    superseded: int = 0
    model_calls: int = 0
    speculative: int = 0
    widened: int = 0
    warmed: int = 0


class Suggester:
    """The suggestions of one server: on screen per document, cached, and in flight."""

    def __init__(self, server: CrlhfServer) -> None:
        self.server = server
        self.outcomes = Outcomes(server.document, self._report)
        """The suggestion on screen per document (answered from while the user types it),
        and what became of each once another took its place (partial, dismissed)."""
        # The replay bench's arm without the cache sets the size to 0 (not a setting: a
        # user has no reason to turn it off, a benchmark has one).
        self.cache = SuggestionCache(int(os.environ.get("CRLHF_SUGGESTION_CACHE_SIZE", CAPACITY)))
        self.debounce = Debouncer()
        self.cancels: dict[str, threading.Event] = {}
        self.counts = Counts()
        self.ring = RingBuffer()
        self.asked_at: dict[str, int] = {}
        """Per document, the line of the last completion request (where to warm up)."""
        self._idle_work: set[threading.Event] = set()
        """Model work nobody waits for (made ahead, a prompt widened, a warm-up): a request
        in any document stops it, or the user's model call would queue behind another
        file's prefill of seconds."""
        self._where: tuple[str, int] | None = None
        """The document and line of the last request, for the ring buffer."""
        self._background: asyncio.Future[None] | None = None  # held: a task may be collected

    async def complete(
        self, uri: str, position: types.Position
    ) -> tuple[CompletionRecord, str] | None:
        """The suggestion at ``position`` and the text to show."""
        server = self.server
        if not server.settings.enabled or server.backend_future is None or server.excluded(uri):
            return None
        doc = server.workspace.text_documents.get(uri)
        if doc is None:
            log.info("completion asked for %s, which is not open", uri)
            return None
        cursor = read_cursor(doc, uri, position, server.encoding)
        if cursor is None:
            return None
        self.counts.requests += 1
        self.asked_at[uri] = cursor.line
        self._context_for(cursor)
        ticket = self.debounce.arrived(uri)
        if (older := self.cancels.get(uri)) is not None:
            older.set()  # the model's work for an older keystroke: its text would be stale
        for work in self._idle_work:
            work.set()
        found = self._without_model(cursor)
        if found is not None:
            return found
        if not await self.debounce.settle(uri, ticket):
            self.counts.superseded += 1
            return None
        record = await self._generate(cursor)
        if record is None:
            return None
        server.feedback.remember(record)
        self.outcomes.showing(record)
        self.cache.put(cursor, self._context(), record)
        self.debounce.suggested(uri, record.id)
        if record.widen is not None:  # a short prompt answered: read the whole at a pause
            self._background = asyncio.ensure_future(self._widen(uri, record.widen, ticket))
        else:
            self._background = asyncio.ensure_future(self._speculate(cursor, record))
        return record, record.text

    def _without_model(self, cursor: Cursor) -> tuple[CompletionRecord, str] | None:
        """The suggestion on screen typed through, or one kept for this text; None: ask
        the model."""
        record = self.outcomes.on_screen.get(cursor.uri)
        rest = typed_through(record, cursor)
        if record is not None and rest is not None:
            self.counts.typed_through += 1
            self.debounce.kept(cursor.uri)
            return record, rest
        hit = self.cache.get(cursor, self._context())
        if hit is None:
            return None
        self.counts.cache_hits += 1
        self.server.feedback.remember(hit[0])
        self.outcomes.showing(hit[0])
        return hit

    def _report(self, completion_id: str, kind: Outcome, accepted_chars: int | None) -> None:
        """A suggestion left the screen partly taken or dismissed: tell the store."""
        self.server.feedback.event(completion_id, kind, accepted_chars=accepted_chars)
        self.server.status_soon()

    # --- code from other files (crlhf.ringBuffer) ---------------------------------------

    def _context_for(self, cursor: Cursor) -> None:
        """Give ``cursor`` the ring buffer's code; a request in another file than the last
        one first adds a chunk from where the user was (they left it)."""
        if not self.server.settings.ringBuffer:
            return
        left = self._where
        self._where = (cursor.uri, cursor.line)
        if left is not None and left[0] != cursor.uri:
            self.pick(*left)
        self._ring_context(cursor)

    def _ring_context(self, cursor: Cursor) -> None:
        if not self.server.settings.ringBuffer:
            return
        ring, uri, language = self.ring, cursor.uri, cursor.language
        path = self._path(uri)
        cursor.context = lambda count: ring.context(uri, path, language, RING_BUDGET, count)

    def pick(self, uri: str, line: int = 0) -> None:
        """Add the code around ``line`` of ``uri`` to the ring buffer (when it is on, the
        document open and not excluded)."""
        if not self.server.settings.ringBuffer or self.server.excluded(uri):
            return
        doc = self.server.workspace.text_documents.get(uri)
        if doc is not None:
            self.ring.pick(uri, self._path(uri), doc.lines, line)

    def last_line(self, uri: str) -> int:
        """Where the user last asked for a completion in ``uri`` (0: never)."""
        return self._where[1] if self._where is not None and self._where[0] == uri else 0

    def _path(self, uri: str) -> str:
        """``uri`` as the model should read it: relative to a workspace folder if in one."""
        path = uri_path(uri) or uri
        for root in self.server._workspace_roots():
            if path.startswith(root.rstrip("/") + "/"):
                return path[len(root.rstrip("/")) + 1 :]
        return path.rsplit("/", 1)[-1]

    def _context(self) -> Hashable:
        """What else changes the model's output than the text: the model and adapter (as
        the completion row records them) and the generation settings."""
        settings, future = self.server.settings, self.server.backend_future
        if future is None or not future.done() or future.exception() is not None:
            return None
        backend = future.result()
        adapter = getattr(backend, "adapter", None)
        return (
            backend.name[:512],
            adapter,
            settings.maxTokens,
            settings.temperature,
            settings.seed,
            settings.ringBuffer,
        )

    async def _generate(self, cursor: Cursor) -> CompletionRecord | None:
        """A new suggestion from the model; the status says "generating" meanwhile (when it
        takes longer than ``STATUS_DELAY``) and then how long it took."""
        server, uri = self.server, cursor.uri
        cancel = threading.Event()
        self.cancels[uri] = cancel
        server.generating += 1
        server.status_soon()
        started = time.perf_counter()
        try:
            future = server.backend_future
            assert future is not None
            # A done future is read directly: wrap_future would cost a loop round trip.
            backend = future.result() if future.done() else await asyncio.wrap_future(future)
            record = await asyncio.get_running_loop().run_in_executor(
                server.model_thread, self._call_model, backend, cursor, cancel
            )
        except asyncio.CancelledError:
            cancel.set()
            raise
        except CrlhfLspError as exc:
            server.log_to_client(f"crlhf: no completion: {exc}", error=True)
            return None
        finally:
            if self.cancels.get(uri) is cancel:
                del self.cancels[uri]
            server.generating -= 1
            server.status_soon()
        if record is not None:
            server.last_latency_ms = round((time.perf_counter() - started) * 1000)
        return record

    async def _speculate(self, cursor: Cursor, record: CompletionRecord) -> None:
        """Make the suggestion that will follow an accept of ``record`` while the user reads
        it, and keep it in the cache (llama.vim's speculative FIM): the ghost text after an
        accept then comes at once. Any request stops it; its prompt is the
        last one plus the suggestion, which the backend's KV cache holds already."""
        future = self.server.backend_future
        if future is None or not future.done() or not future.result().in_process:
            return  # a remote server (vLLM) shared by a team: no second request per suggestion
        after = after_accept(cursor, record.text)
        context = self._context()
        if self.cache.get(after, context) is not None or cursor.uri in self.cancels:
            return
        cancel = self._idle(cursor.uri)
        try:
            made = await asyncio.get_running_loop().run_in_executor(
                self.server.model_thread, self._call_model, future.result(), after, cancel, True
            )
        except CrlhfLspError:
            return  # said when the user's own request meets it
        finally:
            self._done(cursor.uri, cancel)
        if made is not None and context == self._context():
            self.cache.put(after, context, made)

    async def _widen(self, uri: str, ids: list[int], ticket: int) -> None:
        """Once the user has paused (:data:`WIDEN_AFTER_S` without a request for ``uri``),
        read the whole prompt into the KV cache, so that the next requests there use it
        (``crlhf_lsp.timebudget``); any request, in any document, stops it."""
        await asyncio.sleep(WIDEN_AFTER_S)
        if not self.debounce.is_newest(uri, ticket) or uri in self.cancels:
            return
        cancel = self._idle(uri)
        future = self.server.backend_future
        assert future is not None and future.done()
        backend = future.result()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.server.model_thread, self._prefill, backend, uri, ids, cancel
            )
        except CrlhfLspError:
            return  # said when the user's own request meets it
        finally:
            self._done(uri, cancel)

    def _idle(self, uri: str) -> threading.Event:
        """The cancel event of model work for ``uri`` that nobody waits for."""
        cancel = threading.Event()
        self.cancels[uri] = cancel
        self._idle_work.add(cancel)
        return cancel

    def _done(self, uri: str, cancel: threading.Event) -> None:
        self._idle_work.discard(cancel)
        if self.cancels.get(uri) is cancel:
            del self.cancels[uri]

    def warm(self, uri: str) -> None:
        """The file was opened or saved: read the prompt of where the user will likely ask
        into the model's KV cache while it idles (:mod:`crlhf_lsp.warmup`), in place of
        any other work made ahead (the user moved here); any request stops it."""
        server, future = self.server, self.server.backend_future
        if not server.settings.enabled or future is None or not future.done():
            return
        if future.exception() is not None or not future.result().in_process:
            return  # no model, or a remote server shared by a team
        doc = server.document(uri)
        if doc is None or server.excluded(uri):
            return
        if any(c not in self._idle_work for c in self.cancels.values()):
            return  # a request is waiting for the model
        for work in self._idle_work:
            work.set()
        cursor = warm_cursor(doc, uri, warm_line(doc, self.asked_at.get(uri)), server.encoding)
        if cursor is None:
            return
        self._ring_context(cursor)
        cancel = self._idle(uri)
        self._background = asyncio.ensure_future(self._warm(future.result(), cursor, cancel))

    async def _warm(self, backend: Backend, cursor: Cursor, cancel: threading.Event) -> None:
        try:
            await asyncio.sleep(WIDEN_AFTER_S)  # a file opened to type in at once: no work
            read = await asyncio.get_running_loop().run_in_executor(
                self.server.model_thread, self._warm_on_model_thread, backend, cursor, cancel
            )
        except CrlhfLspError:
            return  # said when the user's own request meets it
        finally:
            self._done(cursor.uri, cancel)
        if read:
            log.info("crlhf: warmed %s: %d prompt tokens read", cursor.uri, read)

    def _warm_on_model_thread(
        self, backend: Backend, cursor: Cursor, cancel: threading.Event
    ) -> int:
        if cancel.is_set():
            return 0
        read = warm_prompt(backend, cursor, cancel)
        if read and not cancel.is_set():
            self.counts.warmed += 1  # only the model thread writes it
        return read

    def _prefill(self, backend: Backend, uri: str, ids: list[int], cancel: threading.Event) -> None:
        if cancel.is_set():
            return
        backend.prefill(ids, uri, cancel)
        if not cancel.is_set():
            self.counts.widened += 1  # only the model thread writes it

    def _call_model(
        self, backend: Backend, cursor: Cursor, cancel: threading.Event, ahead: bool = False
    ) -> CompletionRecord | None:
        """On the model thread: a request cancelled while it queued costs no model call."""
        if cancel.is_set():
            return None
        if ahead:  # only this thread writes these counts
            self.counts.speculative += 1
        else:
            self.counts.model_calls += 1
        return generate(backend, self.server.settings, cursor, cancel)

    def accepted(self, completion_id: str, whole: bool = True) -> None:
        """The client accepted ``completion_id``, whole or (by its own word) in part."""
        self.debounce.accepted(completion_id)
        self.outcomes.settled(completion_id, whole)
        self.server.status_soon()

    def invalidate(self) -> None:
        """The model or adapter changed: no kept suggestion is what it would say now."""
        self.cache.clear()  # the suggestion on screen stays: the user may type it still

    def exclude(self, uri: str) -> None:
        """``uri`` became excluded: nothing of it stays, its code in the ring included."""
        self.outcomes.drop(uri)
        self.forget(uri)
        self.ring.forget(uri)

    def forget(self, uri: str) -> None:
        """The document was closed (its code stays in the ring: recently seen)."""
        self.outcomes.closing(uri)
        self.asked_at.pop(uri, None)
        self.debounce.forget(uri)

    def stats(self) -> CompletionStats:
        c = self.counts
        return CompletionStats(
            requests=c.requests,
            typedThrough=c.typed_through,
            cacheHits=c.cache_hits,
            superseded=c.superseded,
            modelCalls=c.model_calls,
            speculative=c.speculative,
            widened=c.widened,
            warmed=c.warmed,
            cached=len(self.cache),
            debounceMs=round(self.debounce.delay.ms),
        )
