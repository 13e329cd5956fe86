"""The dataset a team can take elsewhere: its splits, its pseudonyms, its card, its writer.

One definition for both ways out: ``crlhf-store export-dataset`` (reads the store's
database, takes the rewards of the trainer's last aggregation run) and ``crlhf-train
export-dataset`` (pulls through the API with a trainer token and aggregates with
``crlhf_trainer.rewards.aggregate_labels``). Neither aggregates here: this module only lays
out what an aggregation gave, as a Hugging Face ``DatasetDict`` (``save_to_disk``) that
``datasets.load_from_disk`` reads back and TRL's KTO takes as is:

- ``kto``: one row per rewarded completion: ``prompt``, ``completion``, ``label`` (the
  reward, the expected share of correct lines, is ≥ 0.5), ``reward``, ``reward_low``,
  ``reward_high`` (its 90% interval), ``completion_id``, ``language``;
- ``lines``: one row per line of those completions: ``completion_id``, ``line``, ``text``,
  ``p_correct`` (the posterior), and the votes that counted: ``annotators`` (pseudonyms)
  and ``votes`` (+1 correct, -1 wrong), in the same order.

An annotator's pseudonym is an HMAC-SHA256 of their name under a salt drawn for one export
and written nowhere: stable within an export, unlinkable across two, never a name or token.
Honeypots (their lines, votes and truth) and authors (who wrote a completion, and their
own ratings of it) stay out unless ``include_honeypots`` / ``include_authors``.

``datasets`` is imported only by :func:`write_dataset`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlhf_contract.schemas import completion_lines

__all__ = [
    "FORMATS",
    "Aggregation",
    "DatasetExportError",
    "ExportOptions",
    "RewardRow",
    "Splits",
    "build_splits",
    "check_out",
    "dataset_card",
    "pseudonym",
    "write_dataset",
]

FORMATS = ("hf",)
"""``--format``: ``hf``, a Hugging Face ``DatasetDict`` saved with ``save_to_disk``."""
Splits = dict[str, list[dict[str, Any]]]


class DatasetExportError(Exception):
    """An export that cannot be made: nothing rated yet, an output folder in the way, …"""


@dataclass(frozen=True)
class RewardRow:
    """What the aggregation gave one completion."""

    reward: float  # expected share of correct lines
    low: float  # its 90% interval
    high: float
    line_posteriors: Sequence[float]  # P(line correct), one per line


@dataclass
class Aggregation:
    """An aggregation's output, wherever it was computed."""

    method: str  # em2, paper, paper-l1, mv
    source: str  # where and when, for the card: "aggregation run 12 (…)", …
    rewards: Mapping[str, RewardRow]  # by completion id
    flags: Mapping[str, str] = field(default_factory=dict)  # annotator -> ok/spammer/…


@dataclass
class ExportOptions:
    include_honeypots: bool = False
    include_authors: bool = False
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


def pseudonym(name: str, salt: bytes) -> str:
    """``a-`` and 12 hex digits of HMAC-SHA256(salt, name): stable under one salt.

    >>> pseudonym("alice", b"s") == pseudonym("alice", b"s") != pseudonym("alice", b"t")
    True
    """
    return "a-" + hmac.new(salt, name.encode(), hashlib.sha256).hexdigest()[:12]


def add_export_options(p: argparse.ArgumentParser, *, honeypots_help: str) -> None:
    """The options both export-dataset commands share (the store's and the trainer's)."""
    p.add_argument("--include-honeypots", action="store_true", help=honeypots_help)
    p.add_argument(
        "--include-authors",
        action="store_true",
        help="add who wrote each completion (`kto.author`, a pseudonym as in the votes) and "
        "their own rating of each line (`lines.author_vote`)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace a former export in OUT (nothing else)"
    )


def check_out(out: Path, *, force: bool) -> None:
    """Refuse an ``out`` that holds anything, unless ``force`` and it holds a former export.

    Called before any work, so a refusal costs nothing; a folder holding anything but a
    dataset is never replaced, whatever ``force`` says.
    """
    if out.exists() and not out.is_dir():
        raise DatasetExportError(f"{out} is a file; give a folder (new or empty)")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise DatasetExportError(
            f"{out} exists and is not empty; give a new or empty folder, or --force to "
            "replace a former export there"
        )
    if not (out / "dataset_dict.json").exists():
        raise DatasetExportError(
            f"{out} holds something other than a former export (no dataset_dict.json); "
            "--force replaces only an export: give a new or empty folder"
        )


def build_splits(
    *,
    completions: Mapping[str, Mapping[str, Any]],
    votes: Iterable[Mapping[str, Any]],
    honeypots: Mapping[str, Sequence[int]],
    aggregation: Aggregation,
    options: ExportOptions,
) -> Splits:
    """The ``kto`` and ``lines`` rows.

    ``completions``: by id, each with ``prompt``, ``text``, ``language`` and ``annotator``
    (its author; honeypots have none); ``votes``: line ratings shaped as the store's label
    export (``completion_id``, ``line``, ``annotator``, ``label``, ``own``, ``superseded``);
    ``honeypots``: truth by completion id.
    """
    salt = options.salt
    # one vote per annotator and line, the last read (votes come oldest first), as the
    # aggregation counts them
    by_line: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    own: dict[tuple[str, int], int] = {}
    for v in votes:
        if v.get("superseded"):
            continue  # the annotator's newer rating of the line counts instead
        key = (str(v["completion_id"]), int(v["line"]))
        label = 1 if int(v["label"]) == 1 else -1
        if v.get("own"):
            own[key] = label
        else:
            by_line[key][pseudonym(str(v["annotator"]), salt)] = label
    crowd = {key: list(v.items()) for key, v in by_line.items()}
    kto: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for cid, c in completions.items():
        r = aggregation.rewards.get(cid)
        if cid in honeypots or r is None:
            continue
        row = _kto_row(cid, c, r)
        if options.include_authors:
            row["author"] = pseudonym(str(c["annotator"]), salt) if c.get("annotator") else None
        kto.append(row)
        for n, text in enumerate(completion_lines(str(c["text"]))):
            p = r.line_posteriors[n] if n < len(r.line_posteriors) else None
            lines.append(_line_row(cid, n, text, p, crowd.get((cid, n), []), own.get((cid, n))))
    if options.include_honeypots:
        for row in lines:
            row["truth"] = None
        lines.extend(_honeypot_lines(completions, honeypots, crowd))
    if not options.include_authors:
        for row in lines:
            del row["author_vote"]
    if not kto:
        raise DatasetExportError(
            f"nothing to export yet: the aggregation ({aggregation.source}) rewarded no "
            "completion there is; the team rates accepted lines 👍/👎 in their editors and "
            "the nightly trainer turns them into rewards"
        )
    return {"kto": kto, "lines": lines}


def _kto_row(cid: str, c: Mapping[str, Any], r: RewardRow) -> dict[str, Any]:
    return {
        "prompt": str(c["prompt"]),
        "completion": str(c["text"]),
        "label": bool(r.reward >= 0.5),
        "reward": float(r.reward),
        "reward_low": float(r.low),
        "reward_high": float(r.high),
        "completion_id": cid,
        "language": str(c.get("language") or ""),
    }


def _line_row(
    cid: str,
    n: int,
    text: str | None,
    p: float | None,
    votes: Sequence[tuple[str, int]],
    author_vote: int | None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "completion_id": cid,
        "line": n,
        "text": text,
        "p_correct": None if p is None else float(p),
        "annotators": [a for a, _ in votes],
        "votes": [y for _, y in votes],
        "author_vote": author_vote,
        **extra,
    }


def _honeypot_lines(
    completions: Mapping[str, Mapping[str, Any]],
    honeypots: Mapping[str, Sequence[int]],
    crowd: Mapping[tuple[str, int], list[tuple[str, int]]],
) -> list[dict[str, Any]]:
    """Every line of every honeypot with its truth; ``text`` None where the source does not
    hold it (the API never serves a honeypot's text), ``p_correct`` None (truth is known)."""
    out = []
    for cid, truth in honeypots.items():
        c = completions.get(cid)
        texts = completion_lines(str(c["text"])) if c else [None] * len(truth)
        for n, y in enumerate(truth):
            text = texts[n] if n < len(texts) else None
            out.append(_line_row(cid, n, text, None, crowd.get((cid, n), []), None, truth=y))
    return out


def _features(split: str, options: ExportOptions) -> Any:
    from datasets import Features, Sequence, Value

    if split == "kto":
        columns = {
            "prompt": Value("string"),
            "completion": Value("string"),
            "label": Value("bool"),
            "reward": Value("float64"),
            "reward_low": Value("float64"),
            "reward_high": Value("float64"),
            "completion_id": Value("string"),
            "language": Value("string"),
        }
        if options.include_authors:
            columns["author"] = Value("string")
        return Features(columns)
    columns = {
        "completion_id": Value("string"),
        "line": Value("int32"),
        "text": Value("string"),
        "p_correct": Value("float64"),
        "annotators": Sequence(Value("string")),
        "votes": Sequence(Value("int8")),
    }
    if options.include_authors:
        columns["author_vote"] = Value("int8")
    if options.include_honeypots:
        columns["truth"] = Value("int8")
    return Features(columns)


def write_dataset(out: Path, splits: Splits, card: str, options: ExportOptions) -> None:
    """Save ``splits`` as a DatasetDict in ``out`` with ``card`` as its README.md.

    Written into a sibling folder first and moved into place at the end, so ``out`` holds a
    whole export or what it held before, never half of one.
    """
    from datasets import Dataset, DatasetDict

    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        DatasetDict(
            {
                name: Dataset.from_list(rows, features=_features(name, options))
                for name, rows in splits.items()
            }
        ).save_to_disk(str(tmp))
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)  # empty, or a former export (check_out made sure)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dataset_card(splits: Splits, aggregation: Aggregation, options: ExportOptions) -> str:
    """README.md: what is in the export, how it was made, what was left out."""
    kto, lines = splits["kto"], splits["lines"]
    liked = sum(r["label"] for r in kto)
    annotators = {a for r in lines for a in r["annotators"]}
    n_votes = sum(len(r["votes"]) for r in lines)
    mix = Counter(aggregation.flags.values())
    mix_text = ", ".join(f"{n} {flag}" for flag, n in sorted(mix.items())) or "not reported"
    left_out = [
        "annotator names and tokens (votes carry a pseudonym: an HMAC of the name under a "
        "salt drawn for this export and kept nowhere)",
        "superseded ratings (an annotator's newer rating of a line counts instead)",
    ]
    if not options.include_honeypots:
        left_out.append("honeypots: their lines, votes and truth (--include-honeypots)")
    if not options.include_authors:
        left_out.append("who wrote each completion and their own ratings (--include-authors)")
    return _CARD.format(
        n_kto=len(kto),
        n_liked=liked,
        n_disliked=len(kto) - liked,
        n_lines=len(lines),
        n_votes=n_votes,
        n_annotators=len(annotators),
        mix=mix_text,
        method=aggregation.method,
        source=aggregation.source,
        left_out="\n".join(f"- {x}" for x in left_out),
        extra_columns=_extra_columns(options),
    )


def _extra_columns(options: ExportOptions) -> str:
    extra = []
    if options.include_authors:
        extra.append(
            "- `kto.author`, `lines.author_vote`: the completion's author (a pseudonym, the "
            "same as in `annotators`) and their own rating of the line, which the "
            "aggregation does not count"
        )
    if options.include_honeypots:
        extra.append(
            "- `lines.truth`: a honeypot line's known truth (+1/-1), null elsewhere; "
            "honeypot lines have no `p_correct`"
        )
    return "\n".join(extra) or "- none"


_CARD = """\
---
license:  # the team's licence for this data: fill in before sharing (e.g. cc-by-4.0)
task_categories:
- text-generation
tags:
- code
- rlhf
- kto
- crowdsourcing
---

# crlhf export: crowd-rated code completions

Code completions of the team's model, each line rated 👍/👎 by the team in their editors
and aggregated into a reward per completion (crlhf, after Wong & Tan 2024, "Aligning
Crowd-sourced Human Feedback for Reinforcement Learning on Code Generation").

| | |
|---|---|
| completions (`kto`) | {n_kto}: {n_liked} labelled desirable, {n_disliked} undesirable |
| lines (`lines`) | {n_lines}, with {n_votes} votes |
| annotators | {n_annotators} (pseudonymous) |
| crowd mix (the aggregation's flags) | {mix} |
| aggregation | `{method}`: {source} |

## Load it

```python
from datasets import load_from_disk

ds = load_from_disk("THIS_FOLDER")
kto = ds["kto"]  # prompt, completion, label: what trl.KTOTrainer takes
```

## Columns

- `kto`: `prompt`, `completion`, `label` (true when the reward is ≥ 0.5), `reward` (the
  expected share of correct lines), `reward_low` / `reward_high` (its 90% interval),
  `completion_id`, `language`.
- `lines`: `completion_id`, `line` (0-based), `text`, `p_correct` (the posterior that the
  line is correct; the class prior for a line nobody rated), `annotators` and `votes`
  (+1 correct, -1 wrong): the ratings that counted, in the same order.

Optional columns in this export:
{extra_columns}

## Left out

{left_out}
"""
