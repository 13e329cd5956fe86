"""The learning bench's developer corrections: the rewrites of rule-breaking lines reach a
real store as crlhf-lsp's ``retained`` events, and the trainer's pull turns them into the
KTO pairs the nightly trainer would build; nothing is sent without ``--corrections``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from crlhf_cli.learning_config import LearningConfig
from crlhf_cli.services import DemoError

PROMPT = "def f(a, b):\n    p = "
TEXTS = [
    "os.path.join(a, b)\n    return p",
    "os.path.dirname(a)\n    print(p)\n    return p",
    "a\n    return p",
]


def _collected(tok):
    from crlhf_cli.conventions import line_truth
    from crlhf_cli.conventions_fix import corrections
    from crlhf_cli.learning_stores import Collected

    head = PROMPT.rsplit("\n", 1)[-1]
    collected, exported = [], []
    for text in TEXTS:
        cid = str(uuid.uuid4())
        collected.append(
            Collected("m.f", cid, text, line_truth(text, head), corrections(text, head))
        )
        exported.append(
            {
                "id": cid,
                "prompt": PROMPT,
                "text": text,
                "model": "tiny",
                "language": "python",
                "token_ids": tok(text, add_special_tokens=False)["input_ids"],
                "prompt_token_ids": tok(PROMPT)["input_ids"],
            }
        )
    return collected, exported


@pytest.mark.parametrize("share", [1.0, 0.0])
def test_the_developers_rewrites_become_the_trainers_kto_pairs(tmp_path: Path, share) -> None:
    from crlhf_cli.learning_stores import crowd_round
    from crlhf_trainer.corrections import pulled_pairs
    from crlhf_trainer.pull import WorkDir
    from train_helpers import tiny
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny())
    collected, exported = _collected(tok)
    assert [c.fixes for c in collected] == [
        ["Path(a, b)", None],
        ["Path(a).parent", "    logger.info(p)", None],
        [None, None],
    ]
    cfg = LearningConfig(
        work_dir=tmp_path, annotators=4, corrections=share, methods=("kto",), max_honeypots=0
    )
    work = WorkDir(crowd_round(cfg, "default", 0, collected, exported, []))
    rows = work.retention_rows()
    pairs, skipped = pulled_pairs(work, tok)
    if not share:
        assert rows == [] and pairs == []
        return
    # one event per completion, every non-blank line in it, as crlhf-lsp's check sends
    assert sorted(len(r["lines"]) for r in rows) == [2, 2, 3]
    got = sorted(
        (tok.decode(p.rejected_ids).strip(), tok.decode(p.chosen_ids).strip()) for p in pairs
    )
    assert got == [
        ("os.path.dirname(a)", "Path(a).parent"),
        ("os.path.join(a, b)", "Path(a, b)"),
        ("print(p)", "logger.info(p)"),
    ]
    assert skipped.unaligned == 0
    first = next(p for p in pairs if tok.decode(p.rejected_ids).strip() == "os.path.join(a, b)")
    assert tok.decode(first.prompt_ids).endswith(PROMPT)  # the line 0 pair follows the prompt


def test_a_share_draws_that_many_rewrites_per_seed() -> None:
    from crlhf_cli.learning_stores import Collected, retention_events

    text = "\n".join(f"    print({i})" for i in range(200))
    fixes = [f"    logger.info({i})" for i in range(200)]
    collected = [Collected("m.f", str(uuid.uuid4()), text, [-1] * 200, fixes)]
    edited = [
        sum(line.state == "edited" for line in retention_events(collected, 0.3, seed)[0].lines)
        for seed in (0, 1)
    ]
    assert all(40 <= n <= 80 for n in edited) and edited[0] != edited[1]
    again = retention_events(collected, 0.3, 0)[0].lines
    assert sum(line.state == "edited" for line in again) == edited[0]  # the seed decides


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"corrections": 1.5}, "a share"),
        ({"corrections": 0.5}, "kto in --methods"),
        ({"corrections": 0.5, "methods": ("kto",), "scenario": "execution"}, "conventions"),
        ({"arms": ("truth", "random", "corrections"), "methods": ("kto",)}, "above 0"),
    ],
)
def test_corrections_without_a_way_to_use_them_are_refused(kw, match) -> None:
    with pytest.raises(DemoError, match=match):
        LearningConfig(**kw).validate()


def test_the_corrections_arm_takes_no_credit_from_the_ratings(tmp_path: Path) -> None:
    from crlhf_cli.learning_arms import arm_rewards

    cfg = LearningConfig(arms=("truth", "random", "corrections"), methods=("kto",), corrections=1)
    assert cfg.validate() is cfg
    assert arm_rewards("corrections", tmp_path, [], seed=0) == {}


def test_the_corrections_arm_trains_kto_on_the_pairs_alone(tmp_path: Path) -> None:
    """Through the bench's own training step, on a tiny model: the pulled corrections are
    the only rows, and a run whose store has none leaves the base model as it is."""
    from crlhf_cli.learning import _Bench, _train_and_score
    from crlhf_cli.learning_scenarios import Scenario, Scores
    from crlhf_cli.learning_stores import crowd_round
    from crlhf_models import resolve_model
    from train_helpers import tiny
    from transformers import AutoTokenizer

    ref = resolve_model(str(tiny()))
    tok = AutoTokenizer.from_pretrained(ref.path)
    collected, exported = _collected(tok)
    scored: list[str | None] = []

    def score(model, adapter):  # the held-out scoring is the scenario's; here: what was trained
        scored.append(None if adapter is None else str(adapter))
        return Scores([0.0], [None])

    scenario = Scenario("conventions", "nats/token", [], [], [], None, score, True)
    for share, pairs in ((1.0, 3), (0.0, 0)):
        cfg = LearningConfig(
            work_dir=tmp_path / str(share),
            annotators=4,
            max_honeypots=0,
            corrections=share,
            methods=("kto",),
            arms=("truth", "random", "corrections"),
            steps=2,
            batch_size=2,
        )
        work = crowd_round(cfg, "default", 0, collected, exported, [])
        bench = _Bench(cfg, ref, tok, scenario, Scores([0.0], [None]))
        run = _train_and_score(bench, work, collected, "default", 0, "kto", "corrections")
        assert run.corrections == pairs
        assert run.steps == (2 if pairs else 0)  # no pairs: nothing to train, the base stays
    assert len(scored) == 1 and scored[0].endswith("default-0-kto-corrections")
