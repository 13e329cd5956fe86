"""Time budgets: how much prompt a request may make the model read, and how long a model
call may generate.

A time budget per model call: past :data:`GENERATION_BUDGET_S` the suggestion ends at the
next line end, so a slow call (a new position's long prompt, a busy CPU) shows a line or
two now rather than a whole block seconds later; the rest comes after an accept (the
suggestion that follows it is made ahead, :mod:`crlhf_lsp.suggest`). llama-server's
``t_max_predict_ms`` and llama.vim do the same.

The budget counts from the start of the model call, prompt processing included: that is
what the user waits for. ``$CRLHF_GENERATION_BUDGET_S`` overrides it (``0``: none; the tests
set that, so that what the tiny model says does not depend on the machine's load).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

__all__ = [
    "GENERATION_BUDGET_S",
    "PREFILL_TOKENS",
    "SHORT_PROMPT",
    "WIDEN_AFTER_S",
    "LineDeadline",
    "budget_seconds",
    "log_call",
    "prefill_tokens",
]

log = logging.getLogger("crlhf_lsp")

GENERATION_BUDGET_S = 0.8
"""Seconds of a model call after which the suggestion stops at its next line end. On the
default model and 2 cores that is ~500 tokens of cold prompt, or, on a prefix-cache hit,
~25 generated tokens: two or three lines of code."""


PREFILL_TOKENS = 400
"""Most prompt tokens the KV cache lacks that a request reads before answering: ~0.7 s on
the default model and 2 cores (prompts are read at ~550 tokens/s). A whole prompt needing
more (a new position, another file: ~2.8 s for 1,536 tokens) is answered from the nearest
:data:`SHORT_PROMPT` tokens, and read into the KV cache once the user pauses for
:data:`WIDEN_AFTER_S`; the requests after that use it whole."""
SHORT_PROMPT = 384
"""Tokens of the short prompt (some 30 lines of code above the cursor)."""
WIDEN_AFTER_S = 0.5
"""Seconds without a request for the document before the whole prompt is read: typing
would stop it (between 256-token chunks) and the next short prompt would overwrite it."""


def prefill_tokens() -> int:
    """:data:`PREFILL_TOKENS`, or ``$CRLHF_PREFILL_TOKENS`` (``0``: no limit, whole prompts
    always: the latency benches that compare the server with the raw model on the same
    prompts set that)."""
    value = os.environ.get("CRLHF_PREFILL_TOKENS", "")
    return int(value) if value.isdigit() else PREFILL_TOKENS


def budget_seconds() -> float:
    value = os.environ.get("CRLHF_GENERATION_BUDGET_S", "")
    try:
        return float(value) if value else GENERATION_BUDGET_S
    except ValueError:
        return GENERATION_BUDGET_S


class LineDeadline:
    """``should_stop`` for a generation: ``stop(text)``, or, past ``seconds`` (0: never),
    a line of text completed. ``hit`` says the budget ended it: then the last, unfinished
    line is not part of the suggestion (:meth:`complete_lines`)."""

    def __init__(
        self,
        seconds: float,
        stop: Callable[[str], bool],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.end = clock() + seconds if seconds > 0 else None
        self.stop = stop
        self.hit = False

    def __call__(self, text: str) -> bool:
        if self.stop(text):
            return True
        if self.end is not None and self.clock() >= self.end and self.complete_lines(text):
            self.hit = True
            return True
        return False

    @staticmethod
    def complete_lines(text: str) -> str:
        """``text`` up to its last newline, if that holds more than blank lines."""
        head = text[: text.rfind("\n")] if "\n" in text else ""
        return head if head.strip() else ""


def log_call(seconds: float, prompt: int, cached: int, generated: int, hit: bool) -> None:
    """One line per model call in the server's log: the figures a slow suggestion needs."""
    log.info(
        "crlhf: model call %.2f s: %d prompt tokens (%d cached), %d generated%s",
        seconds,
        prompt,
        cached,
        generated,
        f", ended at the {budget_seconds():.1f} s budget" if hit else "",
    )
