"""export-dataset: a store's ratings as a Hugging Face dataset, from the database
(``crlhf-store export-dataset``) and over the API (``crlhf-train export-dataset``).

One live store per module, filled by ``dashboard/crowd.py`` (the crowd simulator's
annotators, honeypots, own and crowd ratings), then aggregated by the nightly's own
``aggregate_work`` (which posts the run the store's export reads).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LiveStore, start_live_store
from crlhf_contract.dataset import (
    Aggregation,
    DatasetExportError,
    ExportOptions,
    RewardRow,
    build_splits,
    pseudonym,
)
from crlhf_contract.schemas import completion_lines
from crlhf_store import cli as store_cli
from crlhf_trainer import cli as train_cli
from crlhf_trainer.aggregation.labels import LabelSet
from crlhf_trainer.nightly import NightlyConfig, aggregate_work, pull_work
from crlhf_trainer.pull import WorkDir
from dashboard.crowd import NAMES, Filled, fill
from datasets import load_from_disk

KTO = ["prompt", "completion", "label", "reward", "reward_low", "reward_high"]
KTO += ["completion_id", "language"]
LINES = ["completion_id", "line", "text", "p_correct", "annotators", "votes"]


@dataclass
class Crowd:
    store: LiveStore
    filled: Filled
    rewards: dict  # completion id -> crlhf_trainer.rewards.Reward, as the nightly posted them
    pages: list[dict]  # the label export, as the nightly pulled it
    work: Path


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crowd]:
    root = Path(tmp_path_factory.mktemp("export"))
    store = start_live_store(root / "store")
    try:
        filled = fill(store, completions=32, honeypots=6)
        cfg = NightlyConfig(store_url=store.url, token=store.trainer_token, model="tiny")
        cfg.work_dir = root / "work"
        pull_work(cfg)
        _, rewards = aggregate_work(cfg)  # posts the run, line posteriors included
        yield Crowd(store, filled, rewards, WorkDir(cfg.work_dir).label_pages(), root)
    finally:
        store.stop()


def _store_export(crowd: Crowd, out: Path, *flags: str) -> int:
    return store_cli.main(
        ["export-dataset", "--data-dir", str(crowd.store.data_dir), *flags, str(out)]
    )


def _crowd_votes(pages: list[dict]) -> Counter:
    """(completion id, line) -> how many crowd votes counted (own and superseded aside)."""
    return Counter(
        (str(r["completion_id"]), r["line"])
        for p in pages
        for r in p["labels"]
        if not r["own"] and not r["superseded"]
    )


def _honeypot_ids(pages: list[dict]) -> set[str]:
    return {cid for p in pages for cid in p["honeypots"]}


def test_store_export_is_the_trainers_last_aggregation(crowd: Crowd, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _store_export(crowd, out) == 0
    ds = load_from_disk(str(out))
    assert set(ds) == {"kto", "lines"}
    assert ds["kto"].column_names == KTO and ds["lines"].column_names == LINES
    kto = ds["kto"].to_list()
    assert {r["completion_id"] for r in kto} == set(crowd.rewards)
    for r in kto:
        want = crowd.rewards[r["completion_id"]]
        assert r["reward"] == pytest.approx(want.mean, abs=1e-9)
        assert (r["reward_low"], r["reward_high"]) == pytest.approx((want.low, want.high))
        assert r["label"] is (want.mean >= 0.5)
    assert {r["label"] for r in kto} == {True, False}  # the crowd has both verdicts
    lines = ds["lines"].to_list()
    texts = {r["completion_id"]: completion_lines(r["completion"]) for r in kto}
    assert len(lines) == sum(len(t) for t in texts.values())
    votes = _crowd_votes(crowd.pages)
    for row in lines:
        cid, n = row["completion_id"], row["line"]
        assert row["text"] == texts[cid][n]
        assert row["p_correct"] == pytest.approx(crowd.rewards[cid].line_posteriors[n], abs=1e-6)
        assert len(row["votes"]) == len(row["annotators"]) == votes[(cid, n)]
        assert set(row["votes"]) <= {1, -1}
    card = (out / "README.md").read_text()
    assert "\nlicense:" in card and f"| completions (`kto`) | {len(kto)}:" in card
    assert "em2" in card and "aggregation run" in card


def test_nothing_names_anyone_or_gives_honeypots_away_by_default(
    crowd: Crowd, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    assert _store_export(crowd, out) == 0
    ds = load_from_disk(str(out))
    assert "truth" not in ds["lines"].column_names and "author" not in ds["kto"].column_names
    assert "author_vote" not in ds["lines"].column_names
    pseudonyms = {a for row in ds["lines"]["annotators"] for a in row}
    assert len(pseudonyms) >= 5 and not pseudonyms & set(NAMES)
    honeypots = _honeypot_ids(crowd.pages)
    assert not honeypots & set(ds["lines"]["completion_id"])
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    secrets = [crowd.store.trainer_token, crowd.store.admin_token, *crowd.filled.tokens.values()]
    secrets += [n for n in NAMES if len(n) >= 5] + sorted(honeypots)  # "ada", "ken": too short
    secrets += ["alice"]  # the live store's own annotator
    assert "posted by" not in (out / "README.md").read_text()  # the trainer account's name
    assert [s for s in secrets if s.encode() in written] == []


def test_the_store_export_needs_no_torch(crowd: Crowd, tmp_path: Path) -> None:
    """A team server installs no torch: the export writes the dataset without it."""
    code = (
        "import sys; from crlhf_store.cli import main;"
        f"rc = main(['export-dataset', '--data-dir', {str(crowd.store.data_dir)!r}, "
        f"{str(tmp_path / 'ds')!r}]);"
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'trl', 'crlhf_trainer'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "0 []", out.stderr[-2000:]


def test_the_flags_add_honeypots_and_authors(crowd: Crowd, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _store_export(crowd, out, "--include-honeypots", "--include-authors") == 0
    ds = load_from_disk(str(out))
    lines = ds["lines"].to_list()
    truth = {p: t for page in crowd.pages for p, t in page["honeypots"].items()}
    got = {}
    for r in lines:
        if r["truth"] is not None:
            got.setdefault(r["completion_id"], []).append(r["truth"])
            assert r["p_correct"] is None and r["text"] is not None  # the database has it
    assert got == truth
    own = sum(1 for p in crowd.pages for r in p["labels"] if r["own"])
    rewarded = {r["completion_id"] for r in ds["kto"]}
    assert own and sum(r["author_vote"] is not None for r in lines) == sum(
        1
        for p in crowd.pages
        for r in p["labels"]
        if r["own"] and str(r["completion_id"]) in rewarded
    )
    authors = set(ds["kto"]["author"])
    voters = {a for r in lines for a in r["annotators"]}
    assert authors and not authors & set(NAMES)
    assert authors & voters  # the same pseudonym: an author's votes on others' lines join


def test_the_trainer_exports_the_same_over_the_api(
    crowd: Crowd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CRLHF_TOKEN", crowd.store.trainer_token)
    out = tmp_path / "api"
    assert train_cli.main(["export-dataset", "--store-url", crowd.store.url, str(out)]) == 0
    assert _store_export(crowd, tmp_path / "db") == 0
    api, db = load_from_disk(str(out)), load_from_disk(str(tmp_path / "db"))
    key = "completion_id"
    for x, y in zip(api["kto"].sort(key), db["kto"].sort(key), strict=True):
        floats = [k for k, v in x.items() if isinstance(v, float)]
        assert [x[k] for k in floats] == pytest.approx([y[k] for k in floats], abs=1e-9)
        assert {k: v for k, v in x.items() if k not in floats} == {
            k: v for k, v in y.items() if k not in floats
        }
    a = {(r[key], r["line"]): r for r in api["lines"]}
    b = {(r[key], r["line"]): r for r in db["lines"]}
    assert a.keys() == b.keys()
    for k, row in a.items():
        assert row["p_correct"] == pytest.approx(b[k]["p_correct"], abs=1e-6)
        assert sorted(row["votes"]) == sorted(b[k]["votes"])
    assert "computed by crlhf-train export-dataset" in (out / "README.md").read_text()

    # the developers' retention verdicts count, as in the night: without them rewards move
    bare = tmp_path / "bare"
    args = ["export-dataset", "--store-url", crowd.store.url, "--no-implicit-labels", str(bare)]
    assert train_cli.main(args) == 0
    without = {r[key]: r["reward"] for r in load_from_disk(str(bare))["kto"]}
    assert any(abs(without[r[key]] - r["reward"]) > 1e-6 for r in api["kto"])

    # an annotator's token may not pull the export
    monkeypatch.setenv("CRLHF_TOKEN", crowd.store.annotator_token)
    assert (
        train_cli.main(["export-dataset", "--store-url", crowd.store.url, str(tmp_path / "x")]) == 2
    )
    assert "403" in capsys.readouterr().err


def test_an_export_refuses_to_overwrite(crowd: Crowd, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "ds"
    (out / "notes").mkdir(parents=True)
    assert _store_export(crowd, out) == 1
    assert "not empty" in capsys.readouterr().err
    assert _store_export(crowd, out, "--force") == 1  # --force replaces only an export
    assert "something other than a former export" in capsys.readouterr().err
    assert (out / "notes").is_dir()
    former = tmp_path / "former"
    assert _store_export(crowd, former) == 0
    assert _store_export(crowd, former) == 1
    assert _store_export(crowd, former, "--force") == 0
    assert load_from_disk(str(former))["kto"].num_rows == len(crowd.rewards)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_a_store_without_aggregation_or_database_says_so(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    assert store_cli.main(["export-dataset", "--data-dir", str(data), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no database at" in err and not data.exists()  # nothing created by an export
    assert store_cli.main(["migrate", "--data-dir", str(data)]) == 0
    assert store_cli.main(["export-dataset", "--data-dir", str(data), str(tmp_path / "o")]) == 1
    assert "no aggregation run yet" in capsys.readouterr().err


def test_the_trainer_says_when_nothing_is_rated(
    start_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    store = start_store()
    monkeypatch.setenv("CRLHF_TOKEN", store.trainer_token)
    out = tmp_path / "o"
    assert train_cli.main(["export-dataset", "--store-url", store.url, str(out)]) == 2
    assert "no line ratings in the store yet" in capsys.readouterr().err and not out.exists()


def test_help_explains(capsys) -> None:  # type: ignore[no-untyped-def]
    for main in (store_cli.main, train_cli.main):
        with pytest.raises(SystemExit) as exit_:
            main(["export-dataset", "--help"])
        assert exit_.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for word in ("`kto`", "`lines`", "license:", "--include-honeypots", "--force"):
            assert word in text


def test_votes_are_the_ones_the_aggregation_counts() -> None:
    """Superseded ratings drop out, a re-pulled rating counts once, own ones only as the
    author's; pseudonyms are stable within an export and change with the salt."""
    cid = "c1"
    votes = [
        {"completion_id": cid, "line": 0, "annotator": "bob", "label": 1, "superseded": True},
        {"completion_id": cid, "line": 0, "annotator": "bob", "label": -1},
        {"completion_id": cid, "line": 0, "annotator": "bob", "label": 0},
        {"completion_id": cid, "line": 0, "annotator": "carol", "label": 1},
        {"completion_id": cid, "line": 1, "annotator": "alice", "label": 1, "own": True},
    ]
    completion = {"prompt": "p", "text": "a\nb\n", "language": "python", "annotator": "alice"}
    agg = Aggregation("em2", "test", {cid: RewardRow(0.5, 0.0, 1.0, [0.25, 0.75])})
    options = ExportOptions(include_authors=True, salt=b"s")
    splits = build_splits(
        completions={cid: completion}, votes=votes, honeypots={}, aggregation=agg, options=options
    )
    (kto,) = splits["kto"]
    assert kto["label"] is True and kto["author"] == pseudonym("alice", b"s")
    first, second = splits["lines"]
    assert first["votes"] == [-1, 1] and first["annotators"] == [
        pseudonym("bob", b"s"),
        pseudonym("carol", b"s"),
    ]
    assert second["votes"] == [] and second["author_vote"] == 1
    assert pseudonym("bob", b"t") != pseudonym("bob", b"s")
    with pytest.raises(DatasetExportError, match="nothing to export"):
        build_splits(
            completions={cid: completion},
            votes=votes,
            honeypots={},
            aggregation=Aggregation("em2", "test", {}),
            options=options,
        )


def test_the_kto_split_feeds_trls_kto(crowd: Crowd, tmp_path: Path, tiny_model: Path) -> None:
    """One batch of the exported ``kto`` split through TRL's own KTO data handling: the
    KTOTrainer tokenises it (prompt, completion, EOS, the KL completions) and its collator
    (``DataCollatorForUnpairedPreference``) pads a batch, on which the KTO loss is finite."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    out = tmp_path / "ds"
    assert _store_export(crowd, out) == 0
    kto = load_from_disk(str(out))["kto"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    args = KTOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=4,
        max_steps=1,
        use_cpu=True,
        report_to="none",
        max_length=256,
        dataset_num_proc=None,
    )
    trainer = KTOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=args,
        train_dataset=kto,
        processing_class=tokenizer,
    )
    assert isinstance(trainer.data_collator, DataCollatorForUnpairedPreference)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 4
    assert {"completion_mask", "KL_input_ids", "label"} <= set(batch)
    labels = set(kto["label"])
    assert {bool(x) for x in batch["label"].tolist()} <= labels
    loss = trainer.compute_loss(trainer.model, batch)
    assert math.isfinite(float(loss.detach()))


def test_labels_in_the_export_are_what_aggregation_read(crowd: Crowd) -> None:
    """The fixture's sanity: the nightly saw every crowd vote the exports write."""
    labels = LabelSet.from_export(crowd.pages)
    assert labels.n_labels == sum(_crowd_votes(crowd.pages).values())
