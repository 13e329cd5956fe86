"""``crlhf demo`` end to end: a real store, a real crlhf-lsp over stdio, the crowd, the trainer.

Runs the whole demo as a user would (a subprocess of the ``crlhf`` command) with the tiny
model of ``tests/tiny_model.py`` and a small, hostile crowd, then checks that the summary
is consistent: aggregation beats majority vote, an adapter is published and hot-swapped,
every figure is in range, and the report holds its four plots.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from crlhf_cli.demo import DEFAULT_MIX, parse_args  # noqa: E402
from crlhf_cli.demo_summary import summary_rows  # noqa: E402
from crlhf_cli.problems import honeypots, humaneval_tail, mbpp_train  # noqa: E402
from paths import TESTS


def test_options_and_presets() -> None:
    quick = parse_args([])
    assert quick.mode == "quick" and quick.model is None and quick.device == "cpu"
    full = parse_args(["--full", "--model", "org/x", "--work-dir", "w", "--mbpp", "3"])
    assert (full.mode, full.model, full.work_dir, full.mbpp) == ("full", "org/x", Path("w"), 3)
    assert full.train_steps > quick.train_steps and full.annotators > quick.annotators
    assert parse_args(["--mix", "reliable=1,adversary=0.5"]).mix == {
        "reliable": 1.0,
        "adversary": 0.5,
    }
    assert set(quick.mix) == set(DEFAULT_MIX)
    assert parse_args(["--scenario", "mbpp"]).completion_tokens() == 64
    assert parse_args(["--max-tokens", "40"]).completion_tokens() == 40


def test_the_conventions_demo_trains_as_the_learning_bench_measured() -> None:
    """The demo shows what the benchmark shows: its night has the sizes whose effect
    bench/learning.py measured over seeds (docs/benchmarks.md), not others."""
    from crlhf_cli.demo_training import train_config
    from crlhf_cli.learning_config import LearningConfig

    demo, bench = parse_args([]), LearningConfig()
    assert demo.scenario == bench.scenario == "conventions"
    assert (demo.prompts, demo.completion_tokens()) == (bench.prompts, bench.max_tokens)
    train = train_config(demo)
    sizes = (train.method, train.max_steps, train.batch_size, train.grad_accum, train.lr)
    assert sizes == (bench.methods[0], bench.steps, bench.batch_size, bench.grad_accum, bench.lr)
    assert (train.kl_coef, train.kl_stop) == (bench.kl_coef, bench.kl_stop)
    with pytest.raises(SystemExit):
        parse_args(["--mix", "geniuses=1"])


def test_problems_stay_out_of_the_evaluation() -> None:
    problems = mbpp_train(40, seed=1)
    ids = [int(p.task_id.split("/")[1]) for p in problems]
    assert all(i <= 10 or 511 <= i <= 974 for i in ids) and len(set(ids)) == 40
    tail = humaneval_tail(3)
    assert [p.task_id for p in tail] == ["HumanEval/163", "HumanEval/162", "HumanEval/161"]
    pots = honeypots(problems[:9], seed=0)
    assert all(len(h.truth) == len(h.text.split("\n")) for h in pots)
    assert any(-1 in h.truth for h in pots) and any(-1 not in h.truth for h in pots)


def test_summary_rows_render_missing_values() -> None:
    summary = json.loads((TESTS / "data" / "demo_summary.json").read_text())
    rows = dict(summary_rows(summary))
    assert rows["hot swap"].startswith("yes")
    assert "pass@1" in rows
    assert "pass their tests" in rows["completions (crlhf-lsp)"]
    conventions = dict(summary_rows(summary | {"scenario": "conventions"}))
    assert "0 keep every convention" in conventions["completions (crlhf-lsp)"]
    assert "(keeping them –, breaking one 0.113)" in conventions["rewards"]


def test_the_conventions_demo_evaluates_no_pass_at_1_its_gate_could_never_trust(
    tmp_path: Path,
) -> None:
    """The quick preset's pass@1 on 5 + 5 problems is below the gate's ``min_items``: with it
    every conventions night ended "not enough evidence", whatever the conventions showed,
    and was 0 → 0 for the default model (the demo, with the training's new sizes, went
    from 16.8 to 10.4 min)."""
    from crlhf_cli.demo_training import nightly_config
    from crlhf_trainer.train import TrainConfig

    def night(*argv: str):  # noqa: ANN202
        return nightly_config(
            parse_args(list(argv)),
            store_url="http://127.0.0.1:9",
            token="t",
            model="m",
            work_dir=tmp_path,
            train=TrainConfig(),
        ).eval

    quick = night()
    assert quick.benchmarks == () and set(quick.suites) == {"conventions", "sound", "correct"}
    cfg = parse_args([])
    assert min(cfg.heldout, cfg.guard_prompts) >= cfg.min_items  # every gated metric can pass
    mbpp = night("--scenario", "mbpp")
    assert mbpp.benchmarks == ("humaneval", "mbpp") and mbpp.limit == 5
    asked = night("--eval-limit", "30")
    assert asked.benchmarks == ("humaneval", "mbpp") and asked.limit == 30
    assert night("--full").limit == 50


def _run_demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
    from tiny_model import build_tiny_model

    work, out = tmp_path / "demo", tmp_path / "summary.json"
    cmd = [
        sys.executable, "-m", "crlhf_cli.main", "demo", "--quick",
        "--model", str(build_tiny_model()), "--work-dir", str(work), "--json", str(out),
        "--honeypots", "12", "--annotators", "10",
        "--mix", "reliable=0.4,always_up=0.3,adversary=0.3", "--redundancy", "5",
        "--max-honeypots", "12", "--max-tokens", "40", "--train-steps", "2", *args,
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode in (0, 3), run.stdout[-4000:] + run.stderr[-4000:]
    s = json.loads(out.read_text())
    assert s == json.loads((work / "summary.json").read_text())
    return run, s, work


def _check_the_gate_and_the_swap(run: subprocess.CompletedProcess, s: dict, work: Path) -> None:
    """Published and hot-swapped (exit 0), kept a candidate with its reason (exit 3), or
    trained nothing because the crowd's credit was flat, saying so (exit 3)."""
    adapter, swap = s["adapter"], s["hot_swap"]
    assert adapter["reason"] == adapter["decision"] and adapter["reason"]
    if adapter["status"] == "none":  # the tiny model's MBPP lines are all wrong, often
        assert run.returncode == 3 and not adapter["published"] and adapter["version"] is None
        assert adapter["reason"].startswith("nothing to learn"), adapter
        assert swap["swapped"] is False and "nothing to learn" in run.stdout
        return
    assert adapter["version"] and len(adapter["sha256"]) == 64
    if adapter["published"]:
        assert run.returncode == 0 and adapter["status"] == "published"
        assert swap["swapped"] is True and swap["version"] == adapter["version"]
        assert 0.0 < swap["ms"] < 30_000
    else:
        assert run.returncode == 3 and adapter["status"] == "candidate"
        assert adapter["reason"].startswith(("refused", "not enough evidence")), adapter
        assert swap["swapped"] is False
    report = (work / "report.html").read_text()
    assert adapter["version"] in report
    assert "crlhf demo: summary" in run.stdout


def _check_the_crowd(s: dict) -> None:
    seen = {k: s[k] for k in ("completions", "crowd", "aggregation", "adapter", "hot_swap")}
    agg = s["aggregation"]
    assert agg["lines"] >= 10, seen
    assert 0.0 <= agg["majority_vote_accuracy"] <= agg["accuracy"] <= 1.0, seen
    flagged = agg["flagged_annotators"]
    assert flagged and all(not name.startswith("reliable") for name in flagged), seen
    assert agg["flagged_unreliable"] == len(flagged)
    em2 = agg["scores"]["em2"]
    assert em2["accuracy"] == agg["accuracy"] and 0.5 <= em2["constant"] <= 1.0
    assert s["rewards"]["n_completions"] == s["completions"]["n"]
    assert 0.0 <= s["rewards"]["mean"] <= 1.0


@pytest.mark.slow
def test_demo_conventions_end_to_end_with_the_tiny_model(tmp_path: Path) -> None:
    run, s, work = _run_demo(
        tmp_path, "--prompts", "14", "--heldout", "24", "--guard-prompts", "20"
    )
    assert s["completions"]["n"] >= 10
    _check_the_crowd(s)
    learning = s["learning"]
    assert learning["scenario"] == "conventions" and learning["higher_is_better"] is True
    assert learning["n"] >= 10 and learning["metric"] == "heldout/conventions"
    assert learning["delta_low"] <= learning["delta"] <= learning["delta_high"]
    assert learning["delta"] == pytest.approx(learning["after"] - learning["before"], abs=1e-9)
    for arm in ("majority_vote", "random"):
        d = learning[arm]
        assert d["delta_low"] <= d["delta"] <= d["delta_high"], arm
    for guard in ("parse_rate", "repetition", "violation_rate"):
        assert 0.0 <= learning[guard]["before"] <= 1.0 and 0.0 <= learning[guard]["after"] <= 1.0
    # the gate compared on the same held-out functions the summary reports
    gate = json.loads(next((work / "trainer" / "runs").glob("*/publish.json")).read_text())
    (check,) = [c for c in gate["gate"]["checks"] if c["name"] == "heldout/conventions"]
    assert check["n"] == learning["n"] and check["delta"] == pytest.approx(learning["delta"])
    # and the guard (parses, no repeated line) on the prompts the summary's guards report
    (sound,) = [c for c in gate["gate"]["checks"] if c["name"] == "heldout/sound"]
    assert sound["n"] == learning["prompts"] == 20
    # every guard completion is kept with its flags, and they are the gate's own numbers
    rows = [json.loads(x) for x in (work / "guards.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    ok = [r["parses_after"] and not r["repeats_after"] for r in rows]
    assert sum(ok) / 20 == pytest.approx(sound["candidate"])
    assert sum(r["parses_after"] for r in rows) / 20 == pytest.approx(
        learning["parse_rate"]["after"]
    )
    # and the second guard: correct held-out lines against their mutated twins
    (correct,) = [c for c in gate["gate"]["checks"] if c["name"] == "heldout/correct"]
    assert 1 <= correct["n"] <= learning["n"]
    assert s["example"]["before"] is not None
    _check_the_gate_and_the_swap(run, s, work)
    assert (work / "report.html").read_text().count("<svg") == 5


@pytest.mark.slow
def test_demo_mbpp_end_to_end_with_the_tiny_model(tmp_path: Path) -> None:
    run, s, work = _run_demo(
        tmp_path, "--scenario", "mbpp", "--mbpp", "10", "--humaneval", "2",
        "--eval-limit", "2", "--eval-max-tokens", "24",
    )  # fmt: skip
    assert s["completions"]["n"] >= 8 and s["learning"] is None
    _check_the_crowd(s)
    if s["adapter"]["status"] == "none":  # nothing trained, so nothing was evaluated
        assert s["eval"] == {"before": {}, "after": {}}
    else:
        for when in ("before", "after"):
            assert 0.0 <= s["eval"][when]["pass@1"] <= 1.0
    # two problems per benchmark are too few to show no harm: the gate says so
    assert not s["adapter"]["published"]
    _check_the_gate_and_the_swap(run, s, work)
    assert (work / "report.html").read_text().count("<svg") == 4


def test_crlhf_demo_help_is_the_demos(capsys: pytest.CaptureFixture[str]) -> None:
    from crlhf_cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["demo", "--help"])
    assert exited.value.code == 0 and "--scenario" in capsys.readouterr().out
    assert main(["--help"]) == 0 and "crlhf demo" in capsys.readouterr().out
