"""Token lines, and training examples from logged token ids."""

from __future__ import annotations

import doctest
import os
import random
import time
import uuid
from dataclasses import asdict
from types import SimpleNamespace

import pytest
from crlhf_contract.schemas import MAX_COMPLETION_TOKENS
from crlhf_trainer import examples as examples_module
from crlhf_trainer.errors import NoTrainingData
from crlhf_trainer.examples import Example, build_examples, token_lines
from train_helpers import tiny


def test_docstring_examples_run():
    failed, attempted = doctest.testmod(examples_module)
    assert attempted > 0 and failed == 0


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny())


def test_token_lines_credit_each_token_to_the_line_of_its_code(tokenizer):
    text = "x = 1\n    return x + 1\n\ty = 'é€😀'\r\nz = 2\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    lines = token_lines(tokenizer.decode, ids)
    assert len(lines) == len(ids) and lines == sorted(lines)
    assert lines[0] == 0 and lines[-1] == 3
    # every token that carries code sits on the line of that code
    decoded = [tokenizer.decode(ids[: i + 1]) for i in range(len(ids))]
    for i, line in enumerate(lines):
        before = decoded[i - 1] if i else ""
        new = decoded[i][len(before) :]
        if new.strip() and "\ufffd" not in new:
            first = len(before) + len(new) - len(new.lstrip())
            assert decoded[i][:first].count("\n") == line, (new, line)


def _lines_by_prefixes(decode, ids):  # the definition: decode every growing prefix
    lines, prev = [], ""
    for i in range(len(ids)):
        text = decode(ids[: i + 1])
        k = len(os.path.commonprefix([prev, text]))
        piece, base = text[k:], text[:k].count("\n")
        stripped = piece.lstrip()
        lines.append(base + (piece[: len(piece) - len(stripped)].count("\n") if stripped else 0))
        prev = text
    return lines


def test_token_lines_match_decoding_every_prefix(tokenizer):
    texts = ["😀😀\n\n😀 a\n  \n\n   é\n", "\n\n\n", "日本語\n  # コメント\r\n\tx = '€'\n"]
    cases = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    rng = random.Random(0)  # random ids: byte tokens that split or never finish characters
    cases += [
        [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 80))] for _ in range(200)
    ]
    for ids in cases:
        assert token_lines(tokenizer.decode, ids) == _lines_by_prefixes(tokenizer.decode, ids), ids


def test_token_lines_decode_a_bounded_window_per_token(tokenizer):
    """Decoding growing prefixes decoded n²/2 ids (8k ids: 3.4 s; a million: hours)."""
    rng = random.Random(1)
    text = "def f(x):\n    return 'é€😀' + x  # ünïcode\n" * 600
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:15_000]
    ids += [rng.randrange(len(tokenizer)) for _ in range(5_000)]
    n = len(ids)
    seen = {"calls": 0, "ids": 0}

    def counting_decode(chunk: list[int]) -> str:
        seen["calls"] += 1
        seen["ids"] += len(chunk)
        assert seen["ids"] <= 8 * n, "decoding is not linear in the number of ids"
        return tokenizer.decode(chunk)

    start = time.perf_counter()
    lines = token_lines(counting_decode, ids)
    assert len(lines) == n and seen["calls"] <= 2 * n
    assert time.perf_counter() - start < 10  # about 0.2 s here; the old way took minutes


def _completion(tokenizer, text, with_ids=True):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return {
        "id": str(uuid.uuid4()),
        "prompt": "def f():\n",
        "text": text,
        "token_ids": ids if with_ids else None,
        "token_logprobs": [-0.5] * len(ids) if with_ids else None,
        "prompt_token_ids": [5, 6, 7, 8] if with_ids else None,
    }


def test_examples_come_from_logged_ids_with_line_credit(tokenizer):
    c = _completion(tokenizer, "    a = 1\n    return a\n")
    reward = SimpleNamespace(mean=0.5, line_posteriors=[0.9, 0.1])
    ex, skipped = build_examples({c["id"]: c}, {c["id"]: reward}, tokenizer.decode, max_tokens=100)
    (e,) = ex
    assert e.completion_ids == c["token_ids"] and e.prompt_ids == [5, 6, 7, 8]
    assert e.logprobs == c["token_logprobs"] and e.reward == 0.5
    assert {e.token_credit[i] for i, ln in enumerate(e.token_line) if ln == 0} == {0.9}
    assert {e.token_credit[i] for i, ln in enumerate(e.token_line) if ln == 1} == {0.1}
    short, _ = build_examples(
        {c["id"]: c}, {c["id"]: reward}, tokenizer.decode, max_tokens=len(c["token_ids"]) + 2
    )
    assert short[0].prompt_ids == [7, 8]  # long prompts keep the code next to the cursor


def test_completions_without_token_ids_are_skipped_and_none_left_is_an_error(tokenizer):
    good = _completion(tokenizer, "a = 1\n")
    bare = _completion(tokenizer, "b = 2\n", with_ids=False)
    reward = SimpleNamespace(mean=1.0, line_posteriors=[1.0])
    rewards = {good["id"]: reward, bare["id"]: reward}
    comps = {good["id"]: good, bare["id"]: bare}
    ex, skipped = build_examples(comps, rewards, tokenizer.decode)
    assert [e.completion_id for e in ex] == [good["id"]] and skipped.no_token_ids == 1
    with pytest.raises(NoTrainingData, match="without logged token ids"):
        build_examples({bare["id"]: bare}, {bare["id"]: reward}, tokenizer.decode)


def test_a_bad_row_is_skipped_and_counted_not_fatal(tokenizer):
    """Rows an older store accepted (ids out of range, too many, log-probs of other tokens)
    are left out and counted; the night trains on the rest."""
    good = _completion(tokenizer, "a = 1\n")
    n = len(good["token_ids"])
    bad_rows = {
        "bad_token_ids": [
            {"token_ids": [10**30] * n},
            {"token_ids": [-5] * n},
            {"token_ids": [len(tokenizer)] * n},  # past the vocabulary
            {"token_ids": [1.5] * n},
            {"prompt_token_ids": [2**31]},
            {"token_ids": [5] * (MAX_COMPLETION_TOKENS + 1), "token_logprobs": None},
        ],
        "logprob_mismatch": [
            {"token_logprobs": [-0.5] * (n + 1)},
            {"token_logprobs": [None] * n},  # stored as -Infinity, exported as null
        ],
    }
    comps = {good["id"]: good}
    for rows in bad_rows.values():
        for change in rows:
            c = _completion(tokenizer, "a = 1\n") | change
            comps[c["id"]] = c
    reward = SimpleNamespace(mean=1.0, line_posteriors=[1.0])
    rewards = {cid: reward for cid in comps}
    ex, skipped = build_examples(comps, rewards, tokenizer.decode, vocab_size=len(tokenizer))
    assert [e.completion_id for e in ex] == [good["id"]]
    assert asdict(skipped) == {
        "no_token_ids": 0,
        "no_reward": 0,
        "logprob_mismatch": len(bad_rows["logprob_mismatch"]),
        "bad_token_ids": len(bad_rows["bad_token_ids"]),
    }

    def refusing(ids: list[int]) -> str:  # a tokenizer that cannot decode an id
        if 4242 in ids:
            raise OverflowError("out of range integral type conversion attempted")
        return tokenizer.decode(ids)

    odd = _completion(tokenizer, "a = 1\n") | {"token_ids": [4242] * n}
    ex, skipped = build_examples(
        {good["id"]: good, odd["id"]: odd}, {good["id"]: reward, odd["id"]: reward}, refusing
    )
    assert len(ex) == 1 and skipped.bad_token_ids == 1
    with pytest.raises(NoTrainingData, match="unusable ids"):
        build_examples({odd["id"]: odd}, {odd["id"]: reward}, refusing)


def test_a_long_prompt_keeps_its_special_head_and_its_end(tokenizer):
    """Issue 13: training kept the last tokens only, dropping BOS and the FIM marker."""
    from crlhf_trainer.rewards import Reward

    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 1
    prompt = [bos, *range(10, 40)]
    ids = tokenizer("x = 1")["input_ids"][-2:]
    row = {"id": "c", "text": "x = 1", "token_ids": ids, "prompt_token_ids": prompt}
    rewards = {"c": Reward("c", 1.0, 1.0, 1.0, [1.0])}
    room = 12 - len(ids)
    (cut,), _ = build_examples({"c": row}, rewards, tokenizer.decode, max_tokens=12)
    assert cut.prompt_ids == prompt[-room:] and bos not in cut.prompt_ids
    (kept,), _ = build_examples(
        {"c": row}, rewards, tokenizer.decode, max_tokens=12, special_ids=frozenset({bos})
    )
    assert kept.prompt_ids == [bos, *prompt[-(room - 1) :]]
    assert len(kept.prompt_ids) + len(kept.completion_ids) == 12
    whole = build_examples({"c": row}, rewards, tokenizer.decode)[0][0]
    assert whole.prompt_ids == prompt  # what was served fits the default


def test_a_night_trains_on_recent_completions_plus_a_replay_of_older_ones():
    from datetime import UTC, datetime, timedelta

    from crlhf_trainer.trainset import recent_with_replay

    now = datetime(2026, 12, 6, tzinfo=UTC)
    ages = {f"new{i}": 1 for i in range(10)} | {f"old{i}": 40 for i in range(30)}
    completions = {
        cid: {"created_at": (now - timedelta(days=days)).isoformat()} for cid, days in ages.items()
    }
    examples = [Example(cid, [1], [2], 0.5, [0.5]) for cid in ages]
    chosen, counts = recent_with_replay(examples, completions, 14, 0.5, now=now)
    assert counts == {"recent": 10, "replayed": 5, "older": 30}
    ids = [e.completion_id for e in chosen]
    assert (
        sum(i.startswith("new") for i in ids) == 10 and sum(i.startswith("old") for i in ids) == 5
    )
    again, _ = recent_with_replay(examples, completions, 14, 0.5, now=now)
    assert [e.completion_id for e in again] == ids  # seeded: the same night twice, same data
    everything, _ = recent_with_replay(examples, completions, 0, 0.5, now=now)
    assert len(everything) == 40
