"""The whole nightly job against a real store process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from crlhf_contract.retention import RetainedLine
from crlhf_contract.schemas import EventIn, completion_lines
from crlhf_trainer.cli import main
from crlhf_trainer.errors import StoreGone
from crlhf_trainer.evaluate import EvalConfig
from crlhf_trainer.gate import GateConfig
from crlhf_trainer.nightly import NightlyConfig, run_nightly
from crlhf_trainer.train import TrainConfig
from train_helpers import populate, tiny


def _token_file(store, folder: Path) -> str:
    """The trainer's token in a file: crlhf-train refuses one on its command line."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trainer.token"
    path.write_text(store.trainer_token + "\n")
    return str(path)


def _args(store, work: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--store-url",
        store.url,
        "--token-file",
        _token_file(store, work.parent),
        "--model",
        str(tiny()),
        "--work-dir",
        str(work),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--grad-accum",
        "1",
        *extra,
    ]


def test_a_thin_evaluation_leaves_a_candidate_with_its_reason(live_store, tmp_path, capsys):
    """One MBPP problem and a handful of held-out completions cannot show no harm."""
    populate(live_store, tiny(), per_prompt=2)
    work = tmp_path / "work"
    args = _args(live_store, work, "--eval", "mbpp", "--eval-limit", "1", "--max-new-tokens", "8")
    assert main(args) == 0  # a refused gate is not an error
    with live_store.client(live_store.trainer_token) as client:
        assert client.latest_adapter() is None
        (candidate,) = client.list_adapters()
    assert candidate.status == "candidate"
    assert "not enough evidence" in candidate.metrics["gate"]
    (run,) = (work / "runs").iterdir()
    publish = json.loads((run / "publish.json").read_text())
    assert publish["gate"]["decision"] == "not enough evidence"
    checks = {c["name"]: c for c in publish["gate"]["checks"]}
    assert checks["mbpp/pass@1"]["n"] == 1 and checks["mbpp/pass@1"]["verdict"] == "too few"
    card = (run / "adapter" / "README.md").read_text()
    assert "Gate: not enough evidence" in card


def test_crlhf_train_run_publishes_an_adapter(live_store, tmp_path, capsys):
    populate(live_store, tiny(), per_prompt=2)
    work = tmp_path / "work"
    args = _args(live_store, work, "--eval", "mbpp", "--eval-limit", "1", "--max-new-tokens", "8")
    assert main([*args, "--publish-without-evidence"]) == 0
    version = capsys.readouterr().out.strip().splitlines()[-1]
    with live_store.client(live_store.trainer_token) as client:
        latest = client.latest_adapter()
    assert latest is not None and latest.version == version and latest.status == "published"
    assert latest.base_model == str(tiny()) and "mbpp/pass@1" in latest.metrics
    (run,) = (work / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["publish"]["passed"] and summary["train"]["examples"] > 0
    assert not summary["train"]["corrections"]["used"]  # pg cannot train on the pairs
    # the next night, stage by stage, continues the chain
    store = ["--store-url", live_store.url, "--token-file", _token_file(live_store, tmp_path)]
    common = ["--work-dir", str(work), "--model", str(tiny())]
    assert main(["pull", *store, "--work-dir", str(work)]) == 0
    train = ["--max-steps", "1", "--batch-size", "4", "--grad-accum", "1", "--method", "pg-line"]
    assert main(["train", *store, *common, *train]) == 0
    assert main(["eval", *common, "--eval", "none"]) == 0
    assert main(["publish", *store, *common]) == 0  # --eval none: never published silently
    with live_store.client(live_store.trainer_token) as client:
        assert client.latest_adapter().version == version
    assert main(["publish", *store, *common, "--publish-without-evidence"]) == 0
    with live_store.client(live_store.trainer_token) as client:
        child = client.latest_adapter()
    assert child.version != version and child.parent == version


def test_an_empty_store_then_completions_without_token_ids_are_clear_errors(
    live_store, tmp_path, capsys
):
    assert main(_args(live_store, tmp_path / "w", "--eval", "none")) == 2
    err = capsys.readouterr().err
    assert "no line ratings" in err and "Traceback" not in err
    populate(live_store, tiny(), per_prompt=1, with_token_ids=False)
    assert main(_args(live_store, tmp_path / "w", "--eval", "none")) == 2
    assert "without logged token ids" in capsys.readouterr().err
    with live_store.client(live_store.trainer_token) as client:
        assert client.list_adapters() == []  # nothing published by mistake


@pytest.mark.slow  # 10-20 s: make test runs it, make check does not
def test_a_store_that_disappears_mid_run_is_resumed_by_the_next_run(live_store, tmp_path):
    populate(live_store, tiny(), per_prompt=1)
    cfg = NightlyConfig(
        store_url=live_store.url,
        token=live_store.trainer_token,
        model=str(tiny()),
        work_dir=tmp_path / "w",
        train=TrainConfig(max_steps=1, batch_size=4, grad_accum=1),
        eval=EvalConfig(benchmarks=()),
        gate=GateConfig(publish_without_evidence=True),
    )

    def vanish(stage, n, total):
        if stage == "pull":
            live_store.stop()

    with pytest.raises(StoreGone, match="re-run"):
        run_nightly(cfg, vanish)
    cursor = json.loads((tmp_path / "w" / "cursor.json").read_text())
    assert cursor["labels"] is not None  # the page before the failure is kept
    live_store.start()
    with live_store.client(live_store.trainer_token) as client:
        assert client.list_adapters() == []  # nothing was published by mistake
    summary = run_nightly(cfg)
    assert summary["publish"]["status"] == "published"
    assert summary["pull"]["labels"] == 0  # everything had been pulled before the failure


def _correct_first_lines(store, completions) -> int:
    """alice (their author) rewrites the first non-blank line of each: retained events."""
    events = []
    for c in completions:
        line, text = next((i, t) for i, t in enumerate(completion_lines(c.text)) if t.strip())
        fix = RetainedLine(line=line, state="edited", distance=7, correction=text + "  # fix")
        events.append(
            EventIn(
                event_id=uuid.uuid4(),
                completion_id=c.id,
                kind="retained",
                after_s=300.0,
                lines=[fix],
            )
        )
    with store.client() as alice:
        alice.post_events(events)
    return len(events)


def test_a_night_can_train_with_kto_on_the_rated_lines(live_store, tmp_path):
    """crlhf-train run --method kto: the same pull → aggregate → eval → publish, KTO's loss,
    the developers' corrections added as pairs (--corrections kto, the default)."""
    corrected = _correct_first_lines(live_store, populate(live_store, tiny(), per_prompt=2))
    work = tmp_path / "work"
    assert main([*_args(live_store, work, "--eval", "none"), "--method", "kto"]) == 0
    (run,) = (work / "runs").iterdir()
    train = json.loads((run / "train.json").read_text())
    assert train["method"] == "kto" and train["report"]["steps"] == 2
    fixes = train["corrections"]
    assert fixes["used"] and fixes["pairs"] >= 1
    # every correction is accounted for: trained on, held out or skipped with its reason
    assert fixes["pairs"] + fixes["heldout"] + sum(fixes["skipped"].values()) == corrected
    assert any("kl" in step for step in train["history"])  # KTO's own KL estimate z₀, logged
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    with live_store.client(live_store.trainer_token) as client:
        assert client.latest_adapter() is None  # --eval none never publishes silently
