"""Extra context: a ring buffer of code chunks from files the developer recently opened,
edited or left, put before the prompt as file-path comments (``crlhf.ringBuffer``).

The idea is llama.vim's (``g:llama_config.ring_n_chunks``): code the developer has just
looked at in other files (the helper they are about to call, the class they are
subclassing) is what the model cannot see otherwise. A chunk is :data:`CHUNK_LINES` lines
around where the developer was; one :data:`SIMILAR` or more alike to a newer one (the same
region picked again after a few edits) is evicted, and the oldest goes first past
:data:`MAX_CHUNKS`.

The rendered context changes only when a chunk is added (a file opened, saved, or left for
another), never per keystroke, so consecutive prompts still share their beginning and the
backend's KV cache. Chunks of the document being completed are left out (the prompt has
its code already); excluded files (``crlhf_lsp.privacy``) never get in: the caller checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CHUNK_LINES", "MAX_CHUNKS", "SIMILAR", "Chunk", "RingBuffer", "similarity"]

CHUNK_LINES = 32
"""Lines per chunk: a function or two, ~300 tokens of code."""
MAX_CHUNKS = 8
"""Chunks kept; more than fit in the budget, so that the newest that fit are used."""
SIMILAR = 0.9
"""Dice similarity of the chunks' word sets at which the older chunk is evicted."""
MIN_LINES = 4
"""Non-blank lines a chunk needs to be worth its tokens."""
HASH_COMMENT = {"python", "ruby", "shellscript", "perl", "r", "yaml", "toml", "makefile"}
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Chunk:
    uri: str
    path: str
    text: str
    words: frozenset[str]


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice coefficient of two word sets: 1 for the same words, 0 for none shared."""
    if not a and not b:
        return 1.0
    return 2 * len(a & b) / (len(a) + len(b))


class RingBuffer:
    """The chunks, oldest first; :meth:`pick` adds one, :meth:`context` renders them."""

    def __init__(self, max_chunks: int = MAX_CHUNKS, chunk_lines: int = CHUNK_LINES) -> None:
        self.max_chunks = max_chunks
        self.chunk_lines = chunk_lines
        self.chunks: list[Chunk] = []
        self.evicted = 0
        self._rendered: dict[tuple[str, str, int, int], str] = {}
        self._version = 0

    def pick(self, uri: str, path: str, lines: list[str], around: int) -> bool:
        """Add the chunk of ``lines`` centred on line ``around``; False when it is too
        small or already there."""
        start = max(0, min(around - self.chunk_lines // 2, len(lines) - self.chunk_lines))
        text = "".join(lines[start : start + self.chunk_lines]).rstrip("\n")
        if sum(1 for line in text.split("\n") if line.strip()) < MIN_LINES:
            return False
        if any(c.text == text for c in self.chunks):
            return False
        chunk = Chunk(uri, path, text, frozenset(_WORDS.findall(text)))
        kept = [c for c in self.chunks if similarity(c.words, chunk.words) < SIMILAR]
        self.evicted += len(self.chunks) - len(kept)
        self.chunks = [*kept, chunk][-self.max_chunks :]
        self._changed()
        return True

    def forget(self, uri: str) -> None:
        """The file became excluded (or was deleted): its chunks go."""
        if any(c.uri == uri for c in self.chunks):
            self.chunks = [c for c in self.chunks if c.uri != uri]
            self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._rendered = {}

    def context(
        self, uri: str, path: str, language: str, budget: int, count: Callable[[str], int]
    ) -> str:
        """The chunks not from ``uri``, newest that fit in ``budget`` tokens, rendered oldest
        first (the newest nearest the cursor), each under a comment naming its file, then
        the comment naming ``path``, the file of the prompt; empty without chunks.
        Rendered once per change of the chunks (the same text keeps the KV cache)."""
        key = (uri, language, budget, self._version)
        if (text := self._rendered.get(key)) is None:
            text = self._rendered[key] = self._render(uri, language, budget, count)
        return text + f"{_mark(language)} {path}\n" if text else ""

    def _render(
        self, uri: str, language: str, budget: int, count_tokens: Callable[[str], int]
    ) -> str:
        mark = _mark(language)
        parts: list[str] = []
        used = 0
        for chunk in reversed(self.chunks):
            if chunk.uri == uri:
                continue
            part = f"{mark} {chunk.path}\n{chunk.text}\n\n"
            cost = count_tokens(part)
            if used + cost > budget:
                continue  # an older, smaller one may still fit
            parts.append(part)
            used += cost
        return "".join(reversed(parts))


def _mark(language: str) -> str:
    return "#" if language.lower() in HASH_COMMENT else "//"
