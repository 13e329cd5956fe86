"""Corrections as preferred completions: the developers' expected edits (issue 17).

When a developer rewrites an accepted line, crlhf-lsp's retention check reports it
``edited`` with what they wrote instead (``correction``), and ``GET /v1/retention/export``
gives it next to the completion's own text of the line (``original``). For one prompt,
that is a preference pair: the original line rejected, the replacement chosen.

**At which level: the line**, as :mod:`crlhf_trainer.kto` learns from lines. ``x`` is the
served prompt plus the completion's earlier lines (the logged ids: the context the model
had when it wrote the line); ``y_rejected`` the logged ids of the line (what the model
did write); ``y_chosen`` the same span's text with the line's code swapped for the
correction, tokenised (it was never sampled, so it has no logged ids). A correction says
what one line should have been after the lines before it, nothing of the lines after it:
those were written after the original line, not after the replacement, so a
completion-level pair (the whole text with one line swapped) would credit or blame them
for a context they never had.

**KTO only.** KTO learns from unpaired desirable / undesirable examples, so the pair goes
in as two rows of the same ``x`` (:func:`crlhf_trainer.kto.with_corrections`). pg, pg-line
and grpo learn from completions the model *sampled*, weighed by the log-probs crlhf-lsp
logged and by a reward (:class:`~crlhf_trainer.examples.Example`); a replacement has
neither, and scoring it 1 would be supervised fine-tuning under a policy gradient's name.
``--corrections kto`` (the default) adds the pairs when ``--method kto``; the other
methods leave them out and the night's summary says so.

Which corrections count: of a line's checks the latest (largest ``after_s``), as in
:mod:`crlhf_trainer.aggregation.implicit` (a line rewritten at 30 s and put back by 5 min
has none). A blank correction, or one equal to the original (trailing blanks aside),
gives no pair. Nor do completions the night does not train on: honeypots (never in the
completion export, and their ids are listed in the label pages), the held-out split and
what falls outside the window (:mod:`crlhf_trainer.trainset`, applied by
:func:`night_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .aggregation.implicit import latest_checks
from .examples import Served, served_tokens
from .pull import WorkDir
from .trainset import is_heldout, recent_with_replay

if TYPE_CHECKING:
    from .nightly import NightlyConfig

__all__ = [
    "Correction",
    "CorrectionPair",
    "CorrectionsSkipped",
    "correction_pairs",
    "latest_corrections",
    "night_corrections",
    "night_pairs",
    "pulled_pairs",
]

CORRECTIONS = ("off", "kto")
"""``NightlyConfig.corrections`` / ``--corrections``: what the night does with corrections."""


@dataclass(frozen=True)
class Correction:
    """One developer's rewrite of one line of a completion."""

    completion_id: str
    line: int
    original: str
    replacement: str


@dataclass(frozen=True)
class CorrectionPair:
    """The same context, the line the model wrote (rejected) and the developer's (chosen)."""

    completion_id: str
    line: int
    prompt_ids: list[int]
    rejected_ids: list[int]
    chosen_ids: list[int]


@dataclass
class CorrectionsSkipped:
    """Corrections that gave no pair, by reason (the night's summary shows it)."""

    not_pulled: int = 0
    """the completion is not among the pulled ones (a honeypot, or not exported yet)"""
    excluded: int = 0
    """a completion the trainer must not learn from (a honeypot named by the label pages)"""
    unusable: int = 0
    """no usable logged token ids (as :class:`~crlhf_trainer.examples.Skipped` counts)"""
    unaligned: int = 0
    """the line's logged tokens do not hold exactly that line (a token spans two lines)"""


def latest_corrections(rows: Iterable[Mapping[str, Any]]) -> list[Correction]:
    """The corrections of retention export rows, the latest check of each line counting.

    >>> rows = [{"completion_id": "c", "after_s": 30.0, "lines": [
    ...     {"line": 1, "state": "edited", "distance": 1, "original": "  x = 1",
    ...      "correction": "  x = 2"}]},
    ...     {"completion_id": "c", "after_s": 300.0, "lines": [
    ...     {"line": 1, "state": "unchanged", "distance": 0, "original": "  x = 1"}]}]
    >>> latest_corrections(rows[:1])
    [Correction(completion_id='c', line=1, original='  x = 1', replacement='  x = 2')]
    >>> latest_corrections(rows)  # put back by the 5-minute check
    []
    """
    found = []
    for row, line in latest_checks(rows):
        original, replacement = str(line.get("original", "")), line.get("correction")
        if (
            line["state"] == "edited"
            and isinstance(replacement, str)
            and replacement.strip()
            and replacement.rstrip() != original.rstrip()
        ):
            cid = str(row["completion_id"])
            found.append(Correction(cid, int(line["line"]), original, replacement))
    return found


def _swap_line(span: str, original: str, replacement: str) -> str | None:
    """``span`` (the decoded tokens of a line: maybe the previous line's break and the
    indentation before the code, maybe this line's break after it) with the line's code
    replaced; None when the span does not hold exactly the original's code."""
    code = original.strip()
    if not code or span.strip() != code:
        return None
    lead = span[: len(span) - len(span.lstrip())]
    trail = span[len(span.rstrip()) :]
    indent = original[: len(original) - len(original.lstrip())]
    new_indent = replacement[: len(replacement) - len(replacement.lstrip())]
    if lead.endswith(indent):
        lead = lead[: len(lead) - len(indent)] + new_indent
    elif indent != new_indent:
        return None  # part of the indentation sits in the previous line's tokens
    return lead + replacement.strip() + trail


def _pair(
    fix: Correction,
    served: Served,
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
) -> CorrectionPair | None:
    span = [i for i, ln in enumerate(served.token_line) if ln == fix.line]
    if not span:
        return None
    start, end = span[0], span[-1] + 1
    rejected = served.completion_ids[start:end]
    chosen_text = _swap_line(decode(rejected), fix.original, fix.replacement)
    chosen = encode(chosen_text) if chosen_text is not None else []
    if not chosen or chosen == rejected:
        return None
    return CorrectionPair(
        completion_id=fix.completion_id,
        line=fix.line,
        prompt_ids=served.prompt_ids + served.completion_ids[:start],
        rejected_ids=rejected,
        chosen_ids=list(chosen),
    )


def correction_pairs(
    corrections: Iterable[Correction],
    completions: Mapping[str, Mapping[str, Any]],
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    *,
    vocab_size: int,
    max_tokens: int = 2048,
    special_ids: frozenset[int] = frozenset(),
    exclude: Collection[str] = (),
) -> tuple[list[CorrectionPair], CorrectionsSkipped]:
    """One pair per correction of a pulled completion with usable logged ids.

    ``encode`` tokenises the chosen line without special tokens; ``decode`` is the one
    :func:`~crlhf_trainer.examples.build_examples` uses, so the context is the examples'.
    """
    pairs: list[CorrectionPair] = []
    skipped = CorrectionsSkipped()
    served_by_id: dict[str, Served | str] = {}
    for fix in corrections:
        c = completions.get(fix.completion_id)
        if fix.completion_id in exclude:
            skipped.excluded += 1
            continue
        if c is None:
            skipped.not_pulled += 1
            continue
        if fix.completion_id not in served_by_id:
            served_by_id[fix.completion_id] = served_tokens(
                c, decode, vocab_size=vocab_size, max_tokens=max_tokens, special_ids=special_ids
            )
        served = served_by_id[fix.completion_id]
        if isinstance(served, str):
            skipped.unusable += 1
            continue
        pair = _pair(fix, served, encode, decode)
        if pair is None:
            skipped.unaligned += 1
            continue
        pairs.append(pair)
    return pairs, skipped


def pulled_pairs(
    work: WorkDir, tokenizer: Any, max_tokens: int = 2048
) -> tuple[list[CorrectionPair], CorrectionsSkipped]:
    """A pair per pulled correction of a pulled completion, honeypots left out, tokenised
    with ``tokenizer`` as the examples are."""
    honeypots = {cid for page in work.label_pages() for cid in page.get("honeypots") or {}}
    return correction_pairs(
        latest_corrections(work.retention_rows()),
        work.completions(),
        lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"]),
        tokenizer.decode,
        vocab_size=len(tokenizer),
        max_tokens=max_tokens,
        special_ids=frozenset(tokenizer.all_special_ids),
        exclude=honeypots,
    )


def night_pairs(
    work: WorkDir,
    tokenizer: Any,
    *,
    heldout_fraction: float,
    window_days: float,
    replay: float,
    seed: int = 0,
    max_tokens: int = 2048,
) -> tuple[list[CorrectionPair], dict[str, Any]]:
    """The pairs one night trains on: the pulled corrections, minus honeypots and the
    held-out split, within the window plus replay (as the examples); and a summary."""
    completions = work.completions()
    pairs, skipped = pulled_pairs(work, tokenizer, max_tokens)
    kept = [p for p in pairs if not is_heldout(p.completion_id, heldout_fraction)]
    chosen, window = recent_with_replay(kept, completions, window_days, replay, seed=seed)
    summary = {
        "pairs": len(chosen),
        "heldout": len(pairs) - len(kept),
        "window": window,
        "skipped": asdict(skipped),
    }
    return chosen, summary


def night_corrections(
    cfg: NightlyConfig, work: WorkDir, tokenizer: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The night's extra keyword for the trainer (``corrections=`` pairs, KTO only) and
    what its summary says of them."""
    if cfg.corrections == "off" or cfg.method != "kto":
        why = f"--corrections {cfg.corrections} --method {cfg.method}: pairs train with kto only"
        return {}, {"pairs": 0, "used": False, "why": why}
    pairs, summary = night_pairs(
        work,
        tokenizer,
        heldout_fraction=cfg.heldout_fraction,
        window_days=cfg.window_days,
        replay=cfg.replay,
        seed=cfg.train.seed,
        max_tokens=cfg.train.max_tokens,
    )
    return {"corrections": pairs}, summary | {"used": True}
