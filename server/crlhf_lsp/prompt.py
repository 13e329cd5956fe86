"""The model input: prefix and suffix around the cursor, within a token budget.

Fill-in-the-middle (FIM) is used when the model's tokenizer knows one of the FIM token
families below and there is code after the cursor; otherwise the prompt is the plain prefix.

The prefix is cut from the top in chunks of whole lines, so that while the user types the
cut stays where it was and consecutive prompts share their beginning: that is what lets the
local backend reuse its KV cache (a cut that moved by one token per keystroke would not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

FIM_FAMILIES: list[tuple[str, str, str]] = [
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SantaCoder
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder
    ("▁<PRE>", "▁<SUF>", "▁<MID>"),  # Code Llama
]
CHUNK_LINES = 32
"""The prefix is trimmed from the top by this many lines at a time."""
CHARS_PER_TOKEN_MAX = 8
"""Before counting tokens, keep at most budget × this many characters (huge files)."""


@dataclass(frozen=True)
class Prompt:
    text: str
    prefix: str
    suffix: str
    fim: bool


def detect_fim_tokens(vocab: Mapping[str, int]) -> tuple[str, str, str] | None:
    for family in FIM_FAMILIES:
        if all(token in vocab for token in family):
            if family[0].startswith("▁"):  # Code Llama's tokens are written without the ▁
                return ("<PRE>", "<SUF>", "<MID>")
            return family
    return None


def build_prompt(
    prefix: str,
    suffix: str,
    *,
    count_tokens: Callable[[str], int],
    budget: int = 1024,
    fim_tokens: tuple[str, str, str] | None = None,
    context: str = "",
) -> Prompt:
    """Trim ``prefix``/``suffix`` to ``budget`` tokens (¾ prefix, ¼ suffix with FIM).

    ``context`` (code from other files, :mod:`crlhf_lsp.ring`) goes before the prefix and
    out of its budget; it is part of the prompt's prefix as the store records it."""
    fim = fim_tokens is not None and suffix.strip() != ""
    if context:
        budget = max(budget // 2, budget - count_tokens(context))
    prefix_budget = budget * 3 // 4 if fim else budget
    prefix = context + _trim_top(prefix, prefix_budget, count_tokens)
    if not fim or fim_tokens is None:
        return Prompt(text=prefix, prefix=prefix, suffix=suffix, fim=False)
    suffix = _trim_bottom(suffix, budget - prefix_budget, count_tokens)
    pre, suf, mid = fim_tokens
    return Prompt(text=f"{pre}{prefix}{suf}{suffix}{mid}", prefix=prefix, suffix=suffix, fim=True)


def _trim_top(text: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    max_chars = budget * CHARS_PER_TOKEN_MAX
    lines = text.split("\n")
    # Jump to the first chunk boundary within max_chars of the end (huge files), then
    # drop chunk after chunk until the tokens fit.
    size, first = 0, len(lines)
    while first > 0 and size + len(lines[first - 1]) + 1 <= max_chars:
        first -= 1
        size += len(lines[first]) + 1
    drop = -(-first // CHUNK_LINES) * CHUNK_LINES
    while drop < len(lines) - 1:
        kept = "\n".join(lines[drop:])
        if count_tokens(kept) <= budget:
            return kept
        drop += CHUNK_LINES
    last = lines[-1]  # one enormous line: cut characters from its start
    return last[-budget * 2 :] if len(last) > budget * 2 else last


def _trim_bottom(text: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    text = text[: budget * CHARS_PER_TOKEN_MAX]
    lines = text.split("\n")
    while len(lines) > 1 and count_tokens("\n".join(lines)) > budget:
        lines = lines[: max(1, len(lines) - CHUNK_LINES // 4)]
    return "\n".join(lines)[: budget * 4] if count_tokens(lines[0]) > budget else "\n".join(lines)
