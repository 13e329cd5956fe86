"""The learning bench's held-out scores: the conventions margin and the pair guard (a)."""

from __future__ import annotations

import pytest
from crlhf_cli.conventions import Function
from crlhf_cli.learning_eval import eval_items, margins, pair_margins

SOURCE = '''def describe(path, n):
    """Say what is at path."""
    total = n + 1
    print("%s has %d" % (path, total))
    return total
'''


@pytest.fixture(scope="module")
def tiny():
    from tiny_model import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model()
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)


def test_a_held_out_function_gets_a_correct_line_and_its_mutated_twin(tiny) -> None:
    tokenizer, _ = tiny
    fn = Function("shutil", "describe", SOURCE, first_break=2, cut=4)
    (item,) = eval_items(tokenizer, [fn], limit=5, max_tokens=256)
    assert item.breaking and item.conforming and item.pair is not None
    pair = item.pair
    # one shared prefix, then two different lines: the first conforming line mutated
    assert pair.correct[: pair.start] == pair.mutated[: pair.start]
    line = tokenizer.decode(pair.correct[pair.start :])
    twin = tokenizer.decode(pair.mutated[pair.start :])
    assert line.strip() == "total = n + 1" and twin.strip() in ("total = n - 1", "total = n + 2")
    assert "describe" in tokenizer.decode(pair.correct[: pair.start])


def test_a_function_with_no_line_a_mutation_changes_has_no_pair(tiny) -> None:
    tokenizer, _ = tiny
    src = 'def shout(name):\n    print("hi %s" % name)\n    name.upper()\n'
    (item,) = eval_items(tokenizer, [Function("m", "shout", src, 1, 4)], 5, 256)
    assert item.pair is None


def test_the_guard_scores_the_correct_line_against_its_twin(tiny) -> None:
    import torch

    tokenizer, model = tiny
    fn = Function("shutil", "describe", SOURCE, first_break=2, cut=4)
    items = eval_items(tokenizer, [fn], limit=5, max_tokens=256)
    (q,) = pair_margins(model, items)
    (m,) = margins(model, items)
    pair = items[0].pair

    def mean_logp(seq: list[int]) -> float:  # the whole sequence's logits, the slow way
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([seq])).logits[0].float()
        lp = logits.log_softmax(-1)
        return float(torch.stack([lp[t - 1, seq[t]] for t in range(pair.start, len(seq))]).mean())

    assert q == pytest.approx(mean_logp(pair.correct) - mean_logp(pair.mutated), abs=1e-4)
    assert q != 0.0 and m == m  # a real difference, and the margin is a number
