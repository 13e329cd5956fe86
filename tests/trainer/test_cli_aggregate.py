"""`crlhf-train aggregate`: the CSV contract other tools call, and its errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from crlhf_trainer.cli import COMMANDS, build_parser, main
from crlhf_trainer.simulate import simulate_crowd


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture
def crowd_files(tmp_path):
    crowd = simulate_crowd(400, 12, {"reliable": 0.7, "adversary": 0.3}, seed=4)
    ls = crowd.labels
    lines = ["item,annotator,label"]
    for i, a, y in zip(ls.item_idx, ls.annotator_idx, ls.label, strict=True):
        lines.append(f"{ls.items[i]},{ls.annotators[a]},{1 if y > 0 else 0}")
    gold = ["item,label"] + [f"{ls.items[i]},{t}" for i, t in ls.gold.items()]
    gold.append("honeypot-nobody-rated,1")
    labels_csv = write(tmp_path / "labels.csv", "\n".join(lines) + "\n")
    gold_csv = write(tmp_path / "gold.csv", "\n".join(gold) + "\n")
    return crowd, labels_csv, gold_csv


def test_subcommands_are_registered_in_one_table():
    assert "aggregate" in COMMANDS
    help_text = build_parser().format_help()
    assert "aggregate" in help_text


@pytest.mark.parametrize("method", ["em2", "paper", "paper-l1", "mv"])
def test_aggregate_writes_the_contract(tmp_path, crowd_files, method):
    crowd, labels_csv, gold_csv = crowd_files
    out, ann = str(tmp_path / "post.csv"), str(tmp_path / "ann.csv")
    args = [
        "aggregate",
        "--labels",
        labels_csv,
        "--gold",
        gold_csv,
        "--method",
        method,
        "--out",
        out,
        "--annotators-out",
        ann,
    ]
    assert main(args) == 0
    rows = read_rows(out)
    assert rows[0] == ["item", "p_correct"]
    assert [r[0] for r in rows[1:]] == crowd.labels.items  # every item, gold ones included
    p = {r[0]: float(r[1]) for r in rows[1:]}
    assert all(0.0 <= v <= 1.0 for v in p.values())
    for i, truth in crowd.labels.gold.items():
        assert p[crowd.labels.items[i]] == (1.0 if truth > 0 else 0.0)
    arows = read_rows(ann)
    assert arows[0] == ["annotator", "reliability", "low", "high", "spammer_score", "flag"]
    assert len(arows) == 1 + 12
    for r in arows[1:]:
        assert float(r[2]) <= float(r[1]) <= float(r[3]) and r[5] in {"ok", "spammer", "adversary"}
    if method == "em2":
        flags = {r[0]: r[5] for r in arows[1:]}
        for j, kind in enumerate(crowd.annotator_kind):
            assert (flags[f"a{j}"] == "adversary") == (kind == "adversary")


@pytest.mark.parametrize(
    ("labels", "gold", "message"),
    [
        ("", None, "labels.csv: empty file"),
        ("item,annotator\nx,a\n", None, "labels.csv line 1: missing column label"),
        ("item,annotator,label\nx,a,1\nx,b,2\n", None, "labels.csv line 3: unknown label '2'"),
        ("item,annotator,label\nx,a,1\n", "item,truth\nx,1\n", "gold.csv line 1: missing column"),
        ("item,annotator,label\nx,a,1\n", "item,label\nx,ok\n", "gold.csv line 2: unknown label"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, labels, gold, message):
    args = [
        "aggregate",
        "--labels",
        write(tmp_path / "labels.csv", labels),
        "--out",
        str(tmp_path / "p.csv"),
    ]
    if gold is not None:
        args += ["--gold", write(tmp_path / "gold.csv", gold)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("crlhf-train aggregate")
    assert not (tmp_path / "p.csv").exists()


def test_unwritable_output_is_an_error_too(tmp_path, capsys):
    labels = write(tmp_path / "l.csv", "item,annotator,label\nx,a,1\n")
    assert main(["aggregate", "--labels", labels, "--out", str(tmp_path / "no" / "p.csv")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_entry_point_exit_status_and_usage_errors(tmp_path):
    labels = write(tmp_path / "l.csv", "item,annotator,label\nx,a,maybe\n")
    cmd = [
        sys.executable,
        "-m",
        "crlhf_trainer.cli",
        "aggregate",
        "--labels",
        labels,
        "--out",
        str(tmp_path / "p.csv"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"crlhf-train aggregate: error: {labels} line 2: unknown label 'maybe' "
        "(use 1 for correct, 0 or -1 for wrong)"
    ]
    with pytest.raises(SystemExit) as info:
        main(["aggregate", "--labels", labels, "--out", "p.csv", "--method", "glad"])
    assert info.value.code == 2


def test_importing_the_cli_stays_light():
    code = (
        "import sys, crlhf_trainer.cli; "
        "print(sorted({'numpy', 'torch', 'scipy'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]"


def test_aggregate_imports_only_what_aggregation_needs(tmp_path, crowd_files):
    # a fresh interpreter: what `crlhf-train aggregate` loads is part of its run time
    # (of a 1M-label run, pydantic took ~0.15 s via export-dataset's arguments, scipy's
    # sparse products and Beta quantiles ~0.18 s)
    _, labels_csv, gold_csv = crowd_files
    out = str(tmp_path / "post.csv")
    argv = ["aggregate", "--labels", labels_csv, "--gold", gold_csv, "--out", out]
    heavy = ["crlhf_contract", "pydantic", "scipy", "torch", "transformers", "pandas"]
    code = (
        "import sys; from crlhf_trainer.cli import main; "
        f"assert main({argv!r}) == 0; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert len(read_rows(out)) == 401  # the header and every item
