"""Training examples from pulled completions and their rewards.

Examples are built from the *logged* token ids: ``prompt_token_ids`` + ``token_ids`` as
crlhf-lsp produced them. Re-tokenising ``prompt + text`` would not give the same ids
(byte-level BPE merges across the boundary, e.g. ``"\\n"`` + indentation), so the
log-probabilities we push up or down would belong to a sequence the model never wrote.
Each generated token also gets the line it belongs to (for per-line credit): the line of
its first non-blank character, found by decoding the logged ids incrementally.

A row the trainer cannot use (ids outside the vocabulary, log-probs that do not match the
ids, more ids than the store accepts today, …) is skipped and counted in :class:`Skipped`,
which the nightly run reports: one bad row never fails the night.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crlhf_contract.schemas import MAX_COMPLETION_TOKENS, MAX_PROMPT_TOKENS, TOKEN_ID_END

from .errors import NoTrainingData

__all__ = ["Example", "Served", "Skipped", "build_examples", "served_tokens", "token_lines"]


@dataclass
class Example:
    """One logged completion ready for the policy loss."""

    completion_id: str
    prompt_ids: list[int]
    completion_ids: list[int]
    reward: float  # expected share of correct lines (aggregation)
    token_credit: list[float]  # per generated token: the posterior of its line
    logprobs: list[float] | None = None  # sampling log-probs logged by crlhf-lsp
    token_line: list[int] = field(default_factory=list)
    prompt_key: str = ""  # groups completions of the same prompt (GRPO)

    @property
    def n_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass
class Skipped:
    """Rated completions left out of training, by reason (the nightly report shows it)."""

    no_token_ids: int = 0
    no_reward: int = 0
    logprob_mismatch: int = 0
    """log-probs logged, but not one finite number per token id"""
    bad_token_ids: int = 0
    """ids that are not integers of the vocabulary, or more of them than the store takes"""


@dataclass(frozen=True)
class Served:
    """A completion's logged ids as the trainer feeds them to the model."""

    prompt_ids: list[int]  # fitted to the token budget (_fit_prompt)
    completion_ids: list[int]
    token_line: list[int]  # per generated id: its line (token_lines)


def token_lines(
    decode: Callable[[list[int]], str], ids: list[int], *, max_pending: int = 16
) -> list[int]:
    """Line (0-based) of each generated token: where its first non-blank character is.

    A token like ``"\\n    return"`` starts by ending one line but carries the next one's
    code, so it is credited to the next line; a token of blanks only (``"\\n"``) to the
    line it ends.

    Linear: each step decodes a short window, never the whole prefix (which took 3.4 s for
    8k ids and hours for a million). The window starts at the last token whose text was
    complete, so a token decodes in the context it had (SentencePiece drops the space of a
    window's first token; the context token absorbs that), and it grows while a character
    split over several byte tokens is incomplete (it decodes as U+FFFD until its last
    byte). ``max_pending`` caps that growth for ids that never complete a character.
    The lines are those of decoding every growing prefix, as before.
    """
    lines: list[int] = []
    start = 0  # the window: ids[start:i + 1]
    context = ""  # text of ids[start:read], the tokens before the uncommitted ones
    read = 0  # ids[read:i] decoded with U+FFFD at the end: not committed yet
    newlines = 0  # in the text of ids[:read]
    prev = ""  # text after `context` at the previous step
    for i in range(len(ids)):
        window = decode(ids[start : i + 1])
        if window.startswith(context):
            text = window[len(context) :]
        else:  # a tokenizer that rewrites across the boundary; keep what still agrees
            text = window[len(os.path.commonprefix([context, window])) :]
        # A character split over two tokens decodes as U+FFFD until it is complete, so
        # the new text can differ from the previous one before its end.
        k = len(os.path.commonprefix([prev, text]))
        piece = text[k:]
        base = newlines + text[:k].count("\n")
        stripped = piece.lstrip()
        offset = piece[: len(piece) - len(stripped)].count("\n") if stripped else 0
        lines.append(base + offset)
        if text.endswith("\ufffd") and i + 1 - read < max_pending:
            prev = text  # wait for the rest of the character
            continue
        newlines += text.count("\n")
        # The committed tokens become the next window's context, decoded on their own
        # as the next window will decode them.
        start, read, prev = read, i + 1, ""
        context = decode(ids[start:read])
    return lines


def _ids_ok(ids: Any, most: int, vocab_size: int) -> bool:
    """``ids`` is a list of at most ``most`` integers in ``[0, vocab_size)``."""
    return (
        isinstance(ids, list)
        and len(ids) <= most
        and all(type(i) is int and 0 <= i < vocab_size for i in ids)
    )


def _logprobs_ok(logprobs: Any, n: int) -> bool:
    return (
        isinstance(logprobs, list)
        and len(logprobs) == n
        and all(isinstance(x, int | float) and math.isfinite(x) for x in logprobs)
    )


def _fit_prompt(ids: list[int], room: int, special: frozenset[int]) -> list[int]:
    """At most ``room`` ids: the leading special tokens, then the end of the prompt.

    >>> _fit_prompt([2, 9, 10, 11, 12], 3, frozenset({2}))
    [2, 11, 12]
    >>> _fit_prompt([9, 10], 3, frozenset({2}))
    [9, 10]
    """
    if len(ids) <= room:
        return ids
    head = 0
    while head < len(ids) and ids[head] in special and head < room - 1:
        head += 1
    return ids[:head] + ids[len(ids) - (room - head) :]


def build_examples(
    completions: Mapping[str, Mapping[str, Any]],
    rewards: Mapping[str, Any],
    decode: Callable[[list[int]], str],
    *,
    max_tokens: int = 2048,
    vocab_size: int | None = None,
    special_ids: frozenset[int] = frozenset(),
) -> tuple[list[Example], Skipped]:
    """Examples for every rated completion that has logged token ids.

    ``rewards`` maps a completion id to an object with ``mean`` and ``line_posteriors``
    (:func:`crlhf_trainer.rewards.completion_rewards`). The default ``max_tokens`` holds
    what crlhf-lsp serves (a prompt of up to 1,536 tokens and the completion), so the
    model is trained on exactly what it was given. A longer prompt keeps its leading
    special tokens (``special_ids``: BOS, a fill-in-the-middle prefix marker) and its
    last tokens, the code right before the cursor. A row whose
    ids are not in ``[0, vocab_size)`` (``len(tokenizer)``; without it, the store's bound)
    or whose log-probs do not match them is skipped and counted in the returned
    :class:`Skipped`.
    """
    examples: list[Example] = []
    skipped = Skipped()
    vocab = vocab_size if vocab_size is not None else TOKEN_ID_END
    for cid, reward in rewards.items():
        c = completions.get(str(cid))
        if c is None:
            skipped.no_reward += 1
            continue
        served = served_tokens(
            c, decode, vocab_size=vocab, max_tokens=max_tokens, special_ids=special_ids
        )
        if isinstance(served, str):
            setattr(skipped, served, getattr(skipped, served) + 1)
            continue
        examples.append(_example(str(cid), c, reward, served))
    if not examples:
        raise NoTrainingData(
            f"none of the {len(rewards)} rated completion(s) can be trained on "
            f"({skipped.no_token_ids} without logged token ids, {skipped.no_reward} not pulled, "
            f"{skipped.bad_token_ids + skipped.logprob_mismatch} with unusable ids or "
            "log-probs); crlhf-lsp logs token ids for completions it generates — rate some of "
            "those"
        )
    return examples, skipped


def _unusable(c: Mapping[str, Any], vocab: int) -> str | None:
    """The :class:`Skipped` field a pulled completion counts under, or None if usable."""
    ids, prompt_ids = c.get("token_ids"), c.get("prompt_token_ids")
    if not ids or prompt_ids is None:
        return "no_token_ids"
    if not (
        _ids_ok(ids, MAX_COMPLETION_TOKENS, vocab) and _ids_ok(prompt_ids, MAX_PROMPT_TOKENS, vocab)
    ):
        return "bad_token_ids"
    logprobs = c.get("token_logprobs")
    if logprobs is not None and not _logprobs_ok(logprobs, len(ids)):
        # Log-probs of other tokens than these: the ids themselves are suspect too.
        return "logprob_mismatch"
    return None


def served_tokens(
    c: Mapping[str, Any],
    decode: Callable[[list[int]], str],
    *,
    vocab_size: int,
    max_tokens: int,
    special_ids: frozenset[int] = frozenset(),
) -> Served | str:
    """A pulled completion's ids as served (the prompt fitted to ``max_tokens`` as
    :func:`build_examples` says), or the :class:`Skipped` field it counts under."""
    reason = _unusable(c, vocab_size)
    if reason is not None:
        return reason
    ids = list(c["token_ids"])
    try:
        lines = token_lines(decode, ids)
    except (ValueError, TypeError, OverflowError, IndexError, KeyError):
        return "bad_token_ids"  # the tokenizer refused them: not its vocabulary
    room = max(1, max_tokens - len(ids))
    return Served(_fit_prompt(list(c["prompt_token_ids"]), room, special_ids), ids, lines)


def _example(cid: str, c: Mapping[str, Any], reward: Any, served: Served) -> Example:
    logprobs = c.get("token_logprobs")
    posts = list(reward.line_posteriors)
    # A line nobody rated (or past the rated text) gets the completion's reward.
    credit = [posts[ln] if ln < len(posts) else reward.mean for ln in served.token_line]
    return Example(
        completion_id=cid,
        prompt_ids=served.prompt_ids,
        completion_ids=served.completion_ids,
        reward=float(reward.mean),
        token_credit=[float(x) for x in credit],
        logprobs=None if logprobs is None else [float(x) for x in logprobs],
        token_line=served.token_line,
        prompt_key=f"{c.get('prompt', '')}\x00{c.get('suffix', '')}",
    )
