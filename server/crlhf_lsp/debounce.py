"""A burst of keystrokes costs one model call: a request waits a short, adaptive delay
before it may reach the model, and a newer request for the same document supersedes it.

Only requests that would call the model wait (a cached or typed-through suggestion is
answered at once), so the delay is paid once per model call, never per keystroke shown.

The delay follows what the user does with the suggestions (Tabby and Copilot adapt theirs
the same way): an accept means they read and want them, so the next one comes sooner
(× :data:`ACCEPT_FACTOR`); a suggestion passed over (the next model call for the document
came without an accept) means they were typing on, so the next waits longer
(× :data:`DISMISS_FACTOR`); always within [:data:`MIN_MS`, :data:`MAX_MS`].
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os

__all__ = [
    "ACCEPT_FACTOR",
    "DISMISS_FACTOR",
    "MAX_MS",
    "MIN_MS",
    "START_MS",
    "AdaptiveDelay",
    "Debouncer",
    "FixedDelay",
    "delay_from_environment",
]

log = logging.getLogger("crlhf_lsp")

START_MS = 60.0
"""The first delay: longer than the gap between two keystrokes of a fast typist in a burst
(30-50 ms when a word is typed) and short next to a model call (0.3-1 s on a CPU)."""
MIN_MS = 20.0
"""Never shorter: keystrokes of one burst still share a model call."""
MAX_MS = 250.0
"""Never longer: a pause of a quarter second means the user is waiting for ghost text."""
ACCEPT_FACTOR = 0.8
DISMISS_FACTOR = 1.25


class AdaptiveDelay:
    """The debounce delay, moved by accepts and dismissals (see the module docstring)."""

    def __init__(self, start_ms: float = START_MS) -> None:
        self.ms = min(MAX_MS, max(MIN_MS, start_ms))

    @property
    def seconds(self) -> float:
        return self.ms / 1000

    def accepted(self) -> None:
        self._set(self.ms * ACCEPT_FACTOR, "an accept")

    def dismissed(self) -> None:
        self._set(self.ms * DISMISS_FACTOR, "a dismissal")

    def _set(self, ms: float, why: str) -> None:
        new = min(MAX_MS, max(MIN_MS, ms))
        if round(new) != round(self.ms):
            log.info("crlhf: debounce %.0f ms after %s (was %.0f ms)", new, why, self.ms)
        self.ms = new


class FixedDelay(AdaptiveDelay):
    """A delay that accepts and dismissals do not move (``$CRLHF_DEBOUNCE_MS``; 0: none):
    for the latency bench that compares the server with the model called directly."""

    def __init__(self, ms: float) -> None:
        self.ms = max(0.0, ms)

    def _set(self, ms: float, why: str) -> None:
        pass


def delay_from_environment() -> AdaptiveDelay:
    value = os.environ.get("CRLHF_DEBOUNCE_MS", "")
    return FixedDelay(float(value)) if value.isdigit() else AdaptiveDelay()


class Debouncer:
    """Per document: which request is the newest, and the verdict on the last suggestion
    the model made there (accepted, or passed over by the next model call)."""

    def __init__(self, delay: AdaptiveDelay | None = None) -> None:
        self.delay = delay or delay_from_environment()
        self._tickets = itertools.count(1)
        self._newest: dict[str, int] = {}
        self._awaiting: dict[str, str] = {}
        """Per document, the model's last suggestion not yet accepted or passed over."""

    def arrived(self, uri: str) -> int:
        """A request for ``uri`` arrived: it supersedes any older one still waiting."""
        ticket = next(self._tickets)
        self._newest[uri] = ticket
        return ticket

    def is_newest(self, uri: str, ticket: int) -> bool:
        return self._newest.get(uri) == ticket

    async def settle(self, uri: str, ticket: int) -> bool:
        """Wait the delay; whether the request ``ticket`` is still the newest for ``uri``
        (False: a later keystroke's request took its place, it should answer nothing)."""
        if not self.is_newest(uri, ticket):
            return False
        if self.delay.ms > 0:
            await asyncio.sleep(self.delay.seconds)
        return self.is_newest(uri, ticket)

    def suggested(self, uri: str, completion_id: str) -> None:
        """The model made a new suggestion for ``uri``; the previous one there, if it was
        neither accepted nor typed through to here, was passed over."""
        if self._awaiting.pop(uri, None) is not None:
            self.delay.dismissed()
        self._awaiting[uri] = completion_id

    def kept(self, uri: str) -> None:
        """The user typed into the suggestion for ``uri``: neither an accept nor a
        dismissal (whatever they do next with its rest decides nothing here)."""
        self._awaiting.pop(uri, None)

    def accepted(self, completion_id: str) -> None:
        for uri, cid in list(self._awaiting.items()):
            if cid == completion_id:
                del self._awaiting[uri]
                self.delay.accepted()
                return

    def forget(self, uri: str) -> None:
        self._newest.pop(uri, None)
        self._awaiting.pop(uri, None)
