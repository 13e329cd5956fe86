"""The learning benchmark end to end at a tiny size: crlhf-lsp, stores, crowds, trainer.

The tiny model learns nothing worth measuring; this checks the machinery that the full
benchmark (``bench/learning.py`` on the default model) relies on: every arm is trained
from the same pulled export, the truth arm once per seed, items are paired across arms,
the accuracy rows carry their baselines, and the results are written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_learning_bench_runs_every_arm_on_paired_items(tmp_path: Path) -> None:
    from crlhf_cli.learning import run_learning
    from crlhf_cli.learning_config import ARMS, LearningConfig
    from tiny_model import build_tiny_model

    cfg = LearningConfig(
        work_dir=tmp_path / "learning",
        model=str(build_tiny_model()),
        backend="local",
        prompts=6,
        heldout=5,
        honeypots=4,
        annotators=6,
        max_honeypots=3,
        max_tokens=24,
        crowds=("default", "hostile"),
        seeds=1,
        steps=2,
        batch_size=2,
        methods=("pg-line", "kto"),
    )
    lines: list[str] = []
    result = run_learning(cfg, log=lines.append)
    assert result.completions >= 1 and len(result.items) == len(result.base_margin) >= 1
    by_arm = {(r.crowd, r.arm) for r in result.runs}
    assert ("default", "truth") in by_arm and ("hostile", "truth") not in by_arm
    for crowd in cfg.crowds:
        for arm in ARMS:
            for method in cfg.methods:
                table = result.table(crowd, method, arm)
                assert len(table) == 1 and len(table[0]) == len(result.items), (crowd, arm)
    for key in ("default/0", "hostile/0"):
        em2 = result.accuracy[key]["em2"]
        if em2 is not None:
            assert {"accuracy", "constant", "balanced", "auc", "brier"} <= set(em2)
    # the pair guard: one change per held-out item that has a pair, in every run
    with_pair = [q for q in result.base_pair if q is not None]
    assert len(result.base_pair) == len(result.items)
    assert all(len(r.pair) == len(with_pair) for r in result.runs)
    saved = json.loads((cfg.work_dir / "learning.json").read_text())
    assert len(saved["runs"]) == len(result.runs) == (1 + 4 * 2) * 2  # × pg-line, kto
    _generation_of_the_saved_adapters(cfg.work_dir)
    # every crowd round pulled its own store's export (the trainer's only input)
    for crowd in cfg.crowds:
        labels = (cfg.work_dir / f"{crowd}-seed0" / "trainer" / "labels.jsonl").read_text()
        assert '"label"' in labels


def _generation_of_the_saved_adapters(work_dir: Path) -> None:
    """``bench/learning_generation.py`` finds the bench's adapters and scores what they write."""
    gen = _generation_bench()
    args = [str(work_dir), "--prompts", "3", "--seeds", "0", "--max-new-tokens", "8"]
    assert gen.main(args) == 0
    out = json.loads((work_dir / "generation.json").read_text())
    assert out["prompts"] == 3 and set(out["arms"]) == {"truth", "em2", "mv", "random"}
    for arm in out["arms"].values():
        assert arm["seeds"] == [0] and 0 <= arm["violation_rate"] <= 1
        assert arm["delta_low"] <= arm["delta"] <= arm["delta_high"]
        assert arm["sound_gate"] == {"0": "not enough evidence"}  # 3 prompts < min_items
    for arm in ("truth", "em2", "mv"):  # each against random credit, at the same budget
        vs = out["arms"][arm]["versus_random"]
        assert vs["breaking"]["low"] <= vs["breaking"]["delta"] <= vs["breaking"]["high"]
    assert "versus_random" not in out["arms"]["random"]


def _generation_bench():  # noqa: ANN202 - the bench script as a module
    import importlib.util

    from paths import ROOT

    spec = importlib.util.spec_from_file_location("gen", ROOT / "bench" / "learning_generation.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_the_generation_bench_says_how_the_sound_guard_would_gate_each_seed() -> None:
    """Per seed, the demo gate's decision on served completions that parse and repeat no
    line: harm refused, no change let through, too few prompts not enough evidence."""
    gen = _generation_bench()
    base = {"parses": [1.0] * 20 + [0.0] * 4, "repeats": [0.0] * 24}
    same = dict(base)
    looping = {"parses": base["parses"], "repeats": [1.0] * 8 + [0.0] * 16}
    assert gen.sound_gate({0: same, 1: looping}, base) == {0: "publish", 1: "refused"}
    few = {k: v[:3] for k, v in base.items()}
    assert gen.sound_gate({2: few}, few) == {2: "not enough evidence"}


def test_the_generation_bench_pairs_arms_with_random_credit_and_names_broken_rules() -> None:
    """A cut against the base can come from any update; against random credit at the same
    budget it is what the labels bought: paired per prompt on the seeds both arms ran."""
    from crlhf_cli.demo_learning import heldout_prompts

    gen = _generation_bench()
    functions = heldout_prompts(20)
    clean, printing = "x = 1\nreturn x", "x = 1\nprint(x)"
    texts = {
        "em2": {0: [clean] * 20, 1: [clean] * 20, 7: [printing] * 20},
        "random": {0: [printing] * 20, 1: [clean] * 10 + [printing] * 10},
    }
    vs = gen.versus(functions, texts)
    assert set(vs) == {"em2"}  # seed 7 has no random twin and is left out
    assert vs["em2"]["breaking"].mean == pytest.approx((-0.5 - 0.25) / 2)  # seeds 0 and 1
    assert vs["em2"]["breaking"].high < 0
    assert vs["em2"]["sound"].mean == 0  # both parse and repeat nothing
    assert gen.versus(functions, {"em2": texts["em2"]}) == {}
    assert gen.broken_rules(functions[:3], [printing, clean, printing]) == {"logging": 2}


@pytest.mark.slow
def test_the_execution_scenario_samples_runs_the_lines_and_gates_pass_at_1(tmp_path: Path) -> None:
    from crlhf_cli.learning import run_learning
    from crlhf_cli.learning_config import LearningConfig
    from tiny_model import build_tiny_model

    cfg = LearningConfig(
        work_dir=tmp_path / "learning",
        scenario="execution",
        model=str(build_tiny_model()),
        backend="local",
        prompts=3,
        samples=2,
        heldout=3,
        eval_samples=2,
        eval_max_tokens=8,
        honeypots=4,
        annotators=6,
        max_honeypots=3,
        max_tokens=16,
        crowds=("default",),
        arms=("truth", "em2", "random"),
        seeds=1,
        steps=1,
        batch_size=2,
    )
    result = run_learning(cfg, log=[].append)
    # two sessions with their own seeds: the same prompts, drawn twice, reach the store
    exported = (cfg.work_dir / "default-seed0" / "trainer" / "completions.jsonl").read_text()
    rows = [json.loads(line) for line in exported.splitlines() if line.strip()]
    assert result.completions == len(rows) > cfg.prompts
    by_prompt: dict[str, set[str]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt"], set()).add(row["text"])
    assert any(len(texts) > 1 for texts in by_prompt.values())  # the samples differ
    assert result.unit == "pass@1" and len(result.items) == len(result.base_margin) == 3
    assert all(0.0 <= v <= 1.0 for v in result.base_margin)  # pass@1 per held-out problem
    assert result.items[0] == "MBPP/11"  # MBPP's test split, never a training prompt
    for run in result.runs:
        assert len(run.improvement) == 3 and all(-1.0 <= d <= 1.0 for d in run.improvement)
        if run.steps:  # 3 held-out problems are too few for the gate to vouch for anything
            assert run.gate["decision"] == "not enough evidence", run.gate


def test_a_scenario_brings_its_own_sampling_and_bad_settings_are_refused() -> None:
    from crlhf_cli.learning_config import LearningConfig
    from crlhf_cli.services import DemoError

    assert LearningConfig().sampling() == (1, 0.0)
    assert LearningConfig(scenario="execution").sampling() == (4, 0.8)
    assert LearningConfig(scenario="execution", samples=2, temperature=0.5).sampling() == (2, 0.5)
    with pytest.raises(DemoError, match="unknown scenario"):
        LearningConfig(scenario="vibes").validate()
    with pytest.raises(DemoError, match="temperature"):
        LearningConfig(scenario="execution", temperature=0.0).validate()
    # the completions are greedy or llama.cpp's: their logged log-probs are no π_old
    with pytest.raises(DemoError, match="importance 'logged'"):
        LearningConfig(importance="logged").validate()


def test_the_bench_trains_with_the_importance_it_was_given() -> None:
    from crlhf_cli.learning import _train_config
    from crlhf_cli.learning_config import LearningConfig

    cfg = LearningConfig(importance="start", steps=5).validate()
    train = _train_config(cfg, "pg-line", 3)
    assert (train.importance, train.max_steps, train.seed) == ("start", 5, 3)
    assert _train_config(LearningConfig(), "pg-line", 0).importance == "policy"


def test_pass_at_1_by_llama_cpp_runs_each_sample_in_the_jail() -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from crlhf_cli.learning_scenarios import pass_at_1_llamacpp
    from crlhf_trainer.evaluate import EvalConfig, Problem
    from crlhf_trainer.sandbox import Sandbox
    from tiny_gguf import build_tiny_gguf

    # the tiny model writes noise: ending in a comment, any first line keeps a program
    # whole; the second problem's own test fails whatever is written
    passes = Problem("p/1", "def f():\n    return 1\n# ", "assert f() == 1", ("\n",))
    fails = Problem("p/2", "def f():\n    return 1\n# ", "assert f() == 2", ("\n",))
    ecfg = EvalConfig(benchmarks=(), samples=3, temperature=1.0, max_new_tokens=6)
    sandbox = Sandbox(timeout=8, cpu_seconds=4, memory_mb=256)
    assert pass_at_1_llamacpp(build_tiny_gguf(), None, [passes, fails], ecfg, sandbox) == [1.0, 0.0]
