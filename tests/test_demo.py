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

sys.path.insert(0, str(Path(__file__).parent))

from crlhf_cli.demo import DEFAULT_MIX, parse_args  # noqa: E402
from crlhf_cli.problems import honeypots, humaneval_tail, line_truth, mbpp_train  # noqa: E402
from crlhf_cli.steps import summary_rows  # noqa: E402


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
    with pytest.raises(SystemExit):
        parse_args(["--mix", "geniuses=1"])


def test_line_truth_rule() -> None:
    reference = "def f(x):\n\treturn x + 1\n"
    # a passing program: every line correct; blank lines carry no truth
    assert line_truth("def f(x):\n\n    return 1 + x", reference, passed=True) == [1, None, 1]
    # a failing one: lines of the reference (whitespace aside) are right, the rest wrong
    assert line_truth("def f(x):\n    return x + 2", reference, passed=False) == [1, -1]
    assert line_truth("def f(x):\n    return  x+1", reference, passed=False) == [1, -1]


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
    summary = json.loads((Path(__file__).parent / "data" / "demo_summary.json").read_text())
    rows = dict(summary_rows(summary))
    assert rows["hot swap"].startswith("yes")
    assert "pass@1" in rows


@pytest.mark.slow
def test_demo_end_to_end_with_the_tiny_model(tmp_path: Path) -> None:
    from tiny_model import build_tiny_model

    model = build_tiny_model()
    work, out = tmp_path / "demo", tmp_path / "summary.json"
    cmd = [
        sys.executable, "-m", "crlhf_cli.main", "demo", "--quick",
        "--model", str(model), "--work-dir", str(work), "--json", str(out),
        "--mbpp", "10", "--humaneval", "2", "--honeypots", "12", "--annotators", "10",
        "--mix", "reliable=0.4,always_up=0.3,adversary=0.3", "--redundancy", "5",
        "--max-honeypots", "12", "--max-tokens", "40", "--train-steps", "2",
        "--eval-limit", "2", "--eval-max-tokens", "24",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    s = json.loads(out.read_text())
    assert s == json.loads((work / "summary.json").read_text())

    seen = {k: s[k] for k in ("completions", "crowd", "aggregation", "adapter", "hot_swap")}
    assert s["completions"]["n"] >= 8, seen
    agg = s["aggregation"]
    assert agg["lines"] >= 10, seen
    assert agg["accuracy"] > agg["majority_vote_accuracy"], seen
    assert 0.0 <= agg["majority_vote_accuracy"] < agg["accuracy"] <= 1.0
    flagged = agg["flagged_annotators"]
    assert flagged and all(not name.startswith("reliable") for name in flagged), seen
    assert agg["flagged_unreliable"] == len(flagged)

    assert s["rewards"]["n_completions"] == s["completions"]["n"]
    assert 0.0 <= s["rewards"]["mean"] <= 1.0
    for when in ("before", "after"):
        assert 0.0 <= s["eval"][when]["pass@1"] <= 1.0

    adapter = s["adapter"]
    assert adapter["published"] is True and adapter["version"], seen
    assert len(adapter["sha256"]) == 64
    swap = s["hot_swap"]
    assert swap["swapped"] is True and swap["version"] == adapter["version"], seen
    assert 0.0 < swap["ms"] < 30_000
    assert s["example"]["before"] and s["example"]["after"] is not None

    report = (work / "report.html").read_text()
    assert report.count("<svg") == 4
    assert adapter["version"] in report
    assert "crlhf demo: summary" in run.stdout
