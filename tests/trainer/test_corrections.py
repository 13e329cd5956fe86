"""Corrections as preferred completions (issue 17): which rewrites give a pair, and the pair's
context, rejected and chosen tokens. A character tokenizer makes every id readable."""

from __future__ import annotations

import doctest
from typing import Any

import pytest
from crlhf_trainer.corrections import (
    Correction,
    CorrectionPair,
    correction_pairs,
    latest_corrections,
)

PROMPT = "def f(x):\n"
TEXT = "y = x + 1\n    z = y * 2\n    return z\n"


def encode(text: str) -> list[int]:
    return [ord(ch) for ch in text]


def decode(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids)


def pulled(text: str = TEXT, **kw: Any) -> dict[str, Any]:
    return {
        "prompt": PROMPT,
        "text": text,
        "token_ids": encode(text),
        "prompt_token_ids": encode(PROMPT),
        **kw,
    }


def row(cid: str, *lines: dict[str, Any], after_s: float = 300.0) -> dict[str, Any]:
    return {"completion_id": cid, "annotator": "alice", "after_s": after_s, "lines": list(lines)}


def edited(line: int, original: str, correction: str | None) -> dict[str, Any]:
    return {
        "line": line,
        "state": "edited",
        "distance": 3,
        "original": original,
        "correction": correction,
    }


def pairs_of(rows: list[dict[str, Any]], completions: dict, **kw: Any) -> list[CorrectionPair]:
    pairs, _ = correction_pairs(
        latest_corrections(rows), completions, encode, decode, vocab_size=0x110000, **kw
    )
    return pairs


def test_the_docstring_examples_hold():
    from crlhf_trainer import corrections

    failed, attempted = doctest.testmod(corrections)
    assert attempted and not failed


def test_a_correction_of_the_first_line_is_a_pair_after_the_prompt_alone():
    rows = [row("c", edited(0, "y = x + 1", "y = x - 1"))]
    (pair,) = pairs_of(rows, {"c": pulled()})
    assert decode(pair.prompt_ids) == PROMPT
    assert decode(pair.rejected_ids).strip() == "y = x + 1"
    assert decode(pair.chosen_ids).strip() == "y = x - 1"
    # the line's own break and layout are kept: only its code changes
    assert decode(pair.chosen_ids) == decode(pair.rejected_ids).replace("+", "-")


def test_a_later_line_of_a_multi_line_completion_keeps_the_lines_before_it_as_context():
    rows = [row("c", edited(2, "    return z", "        return z + 0"))]
    (pair,) = pairs_of(rows, {"c": pulled()})
    context = decode(pair.prompt_ids)
    assert context.startswith(PROMPT + "y = x + 1\n") and "z = y * 2" in context
    assert "return" not in context
    assert decode(pair.rejected_ids) == "    return z\n"
    assert decode(pair.prompt_ids + pair.rejected_ids) == PROMPT + TEXT
    # the developer's indentation in place of the original's, the line's break kept
    assert decode(pair.chosen_ids) == "        return z + 0\n"


def test_blank_missing_and_unchanged_corrections_give_no_pair():
    rows = [
        row(
            "c",
            edited(0, "y = x + 1", ""),
            edited(1, "    z = y * 2", "   \t"),
            edited(2, "    return z", "    return z   "),
        ),
        row("d", edited(0, "y = x + 1", None)),
    ]
    assert latest_corrections(rows) == []


def test_the_latest_check_of_a_line_counts():
    early = row("c", edited(1, "    z = y * 2", "    z = y * 3"), after_s=30.0)
    late = row("c", edited(1, "    z = y * 2", "    z = y * 4"), after_s=300.0)
    put_back = row("c", {"line": 1, "state": "unchanged", "distance": 0, "original": "x"})
    deleted = row("c", {"line": 1, "state": "deleted", "distance": 9, "original": "x"})
    assert [c.replacement for c in latest_corrections([late, early])] == ["    z = y * 4"]
    assert latest_corrections([early, {**put_back, "after_s": 300.0}]) == []
    assert latest_corrections([early, {**deleted, "after_s": 300.0}]) == []


def test_honeypots_and_completions_not_pulled_give_no_pair():
    fix = [Correction("h", 0, "y = x + 1", "y = 0"), Correction("gone", 0, "y = x + 1", "y = 0")]
    pairs, skipped = correction_pairs(
        fix, {"h": pulled()}, encode, decode, vocab_size=0x110000, exclude={"h"}
    )
    assert pairs == [] and (skipped.excluded, skipped.not_pulled) == (1, 1)


def test_completions_without_usable_ids_or_whose_tokens_straddle_the_line_give_no_pair():
    no_ids = pulled(token_ids=None)
    bad_logprobs = pulled(token_logprobs=[0.0])
    fixes = [
        Correction("no-ids", 0, "y = x + 1", "y = 0"),
        Correction("bad", 0, "y = x + 1", "y = 0"),
        Correction("ok", 0, "a different line", "y = 0"),  # not what the tokens hold
        Correction("ok", 9, "past the end", "y = 0"),
    ]
    completions = {"no-ids": no_ids, "bad": bad_logprobs, "ok": pulled()}
    pairs, skipped = correction_pairs(fixes, completions, encode, decode, vocab_size=0x110000)
    assert pairs == [] and (skipped.unusable, skipped.unaligned) == (2, 2)


@pytest.mark.parametrize("max_tokens", [12, 2048])
def test_the_context_is_the_examples_own(max_tokens):
    """The same fitted prompt as build_examples gives the completion, so the crowd's rows
    and the pair's rows of a line share their context."""
    from crlhf_trainer.examples import build_examples
    from crlhf_trainer.kto import kto_lines, with_corrections
    from crlhf_trainer.rewards import Reward

    c = pulled()
    reward = Reward("c", mean=0.0, low=0.0, high=0.0, line_posteriors=[0.0, 0.0, 0.0])
    examples, _ = build_examples({"c": c}, {"c": reward}, decode, max_tokens=max_tokens)
    crowd = kto_lines(examples)
    rows = [row("c", edited(1, "    z = y * 2", "    z = y * 3"))]
    (pair,) = pairs_of(rows, {"c": c}, max_tokens=max_tokens)
    same = [x for x in crowd if x.prompt_ids == pair.prompt_ids]
    assert [x.completion_ids for x in same] == [pair.rejected_ids] and not same[0].label
    merged = with_corrections(crowd, [pair])
    # the crowd's 👎 of the line is there once; the replacement is added as desirable
    assert len(merged) == len(crowd) + 1 and merged[-1].completion_ids == pair.chosen_ids
    assert merged[-1].label and merged[-1].prompt_ids == pair.prompt_ids


# --- end to end: a real store over HTTP, the trainer's pull, the KTO rows -----------------


def _post_accepted_and_retained(store: Any, tok: Any) -> dict[str, Any]:
    """alice's two completions, accepted; the 5-minute checks rewrite line 0 of one and line
    1 of the other (the 30 s check of the latter saw another rewrite, superseded)."""
    import uuid

    from crlhf_contract.retention import RetainedLine
    from crlhf_contract.schemas import CompletionIn, EventIn

    texts = {"first": "y = x + 1\n    return y\n", "second": "y = x * 2\n    return y\n"}
    ids = {name: uuid.uuid4() for name in texts}
    completions = [
        CompletionIn(
            id=ids[name],
            prompt=PROMPT,
            text=text,
            model="tiny",
            language="python",
            token_ids=tok(text, add_special_tokens=False)["input_ids"],
            prompt_token_ids=tok(PROMPT)["input_ids"],
        )
        for name, text in texts.items()
    ]

    def retained(name: str, after_s: float, *lines: RetainedLine) -> EventIn:
        return EventIn(
            event_id=uuid.uuid4(),
            completion_id=ids[name],
            kind="retained",
            after_s=after_s,
            lines=list(lines),
        )

    keep = RetainedLine(line=1, state="unchanged")
    events = [
        EventIn(event_id=uuid.uuid4(), completion_id=i, kind="accepted") for i in ids.values()
    ]
    events += [
        retained(
            "first",
            300.0,
            RetainedLine(line=0, state="edited", distance=1, correction="y = x - 1"),
            keep,
        ),
        retained(
            "second",
            30.0,
            RetainedLine(line=0, state="unchanged"),
            RetainedLine(line=1, state="edited", distance=4, correction="    return x"),
        ),
        retained(
            "second",
            300.0,
            RetainedLine(line=0, state="unchanged"),
            RetainedLine(line=1, state="edited", distance=4, correction="    return -y"),
        ),
    ]
    with store.client() as alice:
        alice.post_completions(completions)
        alice.post_events(events)
    return {name: str(i) for name, i in ids.items()}


def test_corrections_posted_to_a_store_become_kto_pairs_after_the_trainers_pull(
    live_store, tmp_path
):
    from crlhf_trainer.corrections import night_pairs
    from crlhf_trainer.kto import with_corrections
    from crlhf_trainer.pull import WorkDir, pull
    from train_helpers import tiny
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny())
    ids = _post_accepted_and_retained(live_store, tok)
    work = WorkDir(tmp_path / "work")
    with live_store.client(live_store.trainer_token) as trainer:
        stats = pull(trainer, work)
    assert stats.retention == 3 and stats.completions == 2

    pairs, summary = night_pairs(work, tok, heldout_fraction=0.0, window_days=0, replay=0)
    assert summary["pairs"] == 2 and summary["skipped"]["unaligned"] == 0
    by_cid = {p.completion_id: p for p in pairs}
    first, second = by_cid[ids["first"]], by_cid[ids["second"]]
    assert (first.line, tok.decode(first.prompt_ids)) == (0, tok.decode(tok(PROMPT)["input_ids"]))
    assert tok.decode(first.rejected_ids).strip() == "y = x + 1"
    assert tok.decode(first.chosen_ids).strip() == "y = x - 1"
    context = tok.decode(second.prompt_ids)  # BPE: part of the indentation is in it
    assert second.line == 1 and "y = x * 2\n" in context and "return" not in context
    assert tok.decode(second.rejected_ids).strip() == "return y"
    assert tok.decode(second.chosen_ids).strip() == "return -y"  # the 5-minute check's

    rows = with_corrections([], pairs)
    assert sorted((tok.decode(r.completion_ids).strip(), r.label) for r in rows) == [
        ("return -y", True),
        ("return y", False),
        ("y = x + 1", False),
        ("y = x - 1", True),
    ]
    # the held-out split is never trained on: everything held out, no pair
    _, held = night_pairs(work, tok, heldout_fraction=1.0, window_days=0, replay=0)
    assert (held["pairs"], held["heldout"]) == (0, 2)
