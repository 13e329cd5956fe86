"""The agreement figures (issue 15) on SQLite and PostgreSQL, against a simulated crowd.

Krippendorff's α against worked examples, then every figure of ``stats_agreement``,
``stats_disagreement``, ``stats_calibration`` and ``stats_me`` against the same numbers
computed straight from the simulator's arrays (``dashboard/crowd_db.py`` fills the store).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from crlhf_store.dashboard import stats_agreement, stats_calibration, stats_disagreement, stats_me
from crlhf_store.dashboard.stats_agreement import krippendorff_alpha
from crlhf_store.dashboard.votes import load_votes, verdicts
from crlhf_store.db import Database
from crlhf_store.errors import Invalid, NotFound
from crlhf_store.honeypots import mint_from_line
from crlhf_store.models import Annotator, Completion, Honeypot
from crlhf_store.tokens import create_annotator
from crlhf_trainer.simulate import simulate_crowd
from dashboard.crowd_db import LINES, CrowdDb, fill_db
from sqlalchemy import func, select


@pytest.fixture
def filled(db: Database) -> CrowdDb:
    return fill_db(db)


def _counts(crowd_labels, items: np.ndarray | None = None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """units × (👍, 👎) straight from simulated labels."""
    n = crowd_labels.n_items
    up = np.bincount(crowd_labels.item_idx, weights=crowd_labels.label > 0, minlength=n)
    down = np.bincount(crowd_labels.item_idx, weights=crowd_labels.label < 0, minlength=n)
    counts = np.stack([up, down], axis=1)
    return counts if items is None else counts[items]


# --- Krippendorff's α -------------------------------------------------------------------


def test_alpha_matches_krippendorffs_worked_example() -> None:
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal data: 4
    coders, 12 units, values 1–5, gaps; the paper gives α = 0.743. Unit 12 has one value
    only (not pairable) and unit 11 two of four coders: the missing values."""
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    counts = np.zeros((12, 5))
    for coder in data:
        for unit, value in enumerate(coder):
            if value is not None:
                counts[unit, value - 1] += 1
    assert krippendorff_alpha(counts) == pytest.approx(0.7434, abs=5e-5)
    # the unpairable unit changes nothing, wherever its single value is
    assert krippendorff_alpha(counts[:11]) == pytest.approx(krippendorff_alpha(counts))


def test_alpha_two_values_with_missing_against_the_krippendorff_package() -> None:
    """4 annotators × 6 lines with gaps; the value the ``krippendorff`` package (0.9.0,
    ``alpha(reliability_data=…, level_of_measurement="nominal")``) gave once: 26/77."""
    nan = np.nan
    data = np.array(
        [
            [1, 1, 0, nan, 1, 0],
            [1, 0, 0, 1, nan, 0],
            [nan, 1, 0, 1, 1, 1],
            [1, 1, nan, 0, nan, nan],
        ]
    )
    counts = np.stack([(data == 1).sum(axis=0), (data == 0).sum(axis=0)], axis=1)
    assert krippendorff_alpha(counts) == pytest.approx(0.33766233766233766)
    assert krippendorff_alpha(counts) == pytest.approx(26 / 77)


def test_alpha_edges() -> None:
    assert krippendorff_alpha(np.zeros((0, 2))) is None
    assert krippendorff_alpha(np.array([[1, 0], [0, 1]])) is None  # nothing pairable
    assert krippendorff_alpha(np.array([[3, 0], [2, 0]])) is None  # one value only: D_e = 0
    assert krippendorff_alpha(np.array([[2, 0], [0, 3], [4, 0]])) == 1.0
    assert krippendorff_alpha(np.array([[1, 1], [1, 1]])) < 0  # always split: below chance


def test_alpha_tells_a_reliable_crowd_from_spammers() -> None:
    reliable = simulate_crowd(2000, 10, {"reliable": 1.0}, (3, 3), 0.0, seed=1).labels
    spammers = simulate_crowd(2000, 10, {"spammer": 1.0}, (3, 3), 0.0, seed=1).labels
    assert krippendorff_alpha(_counts(reliable)) > 0.5
    assert abs(krippendorff_alpha(_counts(spammers))) < 0.05  # type: ignore[arg-type]


# --- on a store ------------------------------------------------------------------------


def test_an_empty_store(db: Database) -> None:
    with db.writing() as s:
        me = create_annotator(s, name="solo") and s.scalar(select(Annotator.id))
    with db.reading() as s:
        agreement = stats_agreement.agreement(s)
        disputed = stats_disagreement.disagreement(s)
        calibration = stats_calibration.calibration(s)
        mine = stats_me.my_stats(s, annotator_id=me, name="solo", redundancy=3)  # type: ignore[arg-type]
    assert agreement.alpha.alpha is None and agreement.lines == agreement.votes == 0
    assert agreement.languages == agreement.annotators == agreement.pairs == []
    assert agreement.verdict_source == disputed.verdict_source == "majority"
    assert disputed.lines == []
    assert calibration.lines == 0 and calibration.brier is calibration.ece is None
    assert [b.n for b in calibration.bins] == [0] * 10
    assert mine.ratings == mine.honeypot_answers == mine.review_available == 0
    assert mine.honeypot_accuracy is None and mine.last_active is None


def test_alpha_over_the_store_and_per_language(db: Database, filled: CrowdDb) -> None:
    with db.reading() as s:
        data = stats_agreement.agreement(s)
    counts = _counts(filled.labels)
    assert data.votes == filled.labels.n_labels
    assert data.lines == int((counts.sum(axis=1) > 0).sum())
    assert data.alpha.alpha == pytest.approx(krippendorff_alpha(counts))
    assert data.alpha.pairable_lines == int((counts.sum(axis=1) >= 2).sum())
    assert 0 < data.alpha.alpha < 1  # type: ignore[operator]
    langs = np.array([filled.language(i) for i in range(filled.labels.n_items)])
    assert [a.language for a in data.languages] == ["go", "python", "rust"]
    for a in data.languages:
        assert a.alpha == pytest.approx(krippendorff_alpha(counts[langs == a.language]))
        assert a.votes == int((langs[filled.labels.item_idx] == a.language).sum())


def test_verdicts_are_the_runs_posteriors(db: Database, filled: CrowdDb) -> None:
    """The E-step with the run's parameters gives back em2's own posteriors (honeypot
    lines aside: em2 clamps them to their truth, the dashboard does not)."""
    with db.reading() as s:
        votes = load_votes(s)
        v = verdicts(s, votes)
    assert v.source.startswith("em2 run #")
    index = {key: i for i, key in enumerate(votes.lines)}
    free = range(filled.honeypots * LINES, filled.labels.n_items)
    mine = np.array([v.p_correct[index[filled.line(i)]] for i in free])
    assert mine == pytest.approx(filled.p_correct[list(free)], abs=1e-6)


@pytest.mark.parametrize("method", ["paper", "paper-l1"])
def test_verdicts_of_a_one_coin_run(db: Database, method: str) -> None:
    """A one-coin run (reliability π only) weighs each vote by logit π (α = β = π)."""
    filled = fill_db(db, method=method)
    with db.reading() as s:
        votes = load_votes(s)
        v = verdicts(s, votes)
    assert v.source.startswith(f"{method} run #")
    index = {key: i for i, key in enumerate(votes.lines)}
    free = range(filled.honeypots * LINES, filled.labels.n_items)
    mine = np.array([v.p_correct[index[filled.line(i)]] for i in free])
    assert mine == pytest.approx(filled.p_correct[list(free)], abs=1e-6)


@pytest.mark.parametrize("run", [None, "mv"])
def test_majority_without_a_weighted_run(db: Database, run: str | None) -> None:
    """No run yet, or a majority-vote one: the verdict is the majority (ties: none)."""
    filled = fill_db(db, aggregated=run is not None, method=run or "em2")
    with db.reading() as s:
        votes = load_votes(s)
        v = verdicts(s, votes)
        data = stats_agreement.agreement(s)
    assert v.source == data.verdict_source == "majority" and v.run_id is None
    counts = _counts(filled.labels)
    index = {key: i for i, key in enumerate(votes.lines)}
    for item in range(filled.labels.n_items):
        up, down = counts[item]
        assert v.verdict[index[filled.line(item)]] == np.sign(up - down)


def test_agreement_with_the_aggregate_and_in_pairs(db: Database, filled: CrowdDb) -> None:
    with db.reading() as s:
        data = stats_agreement.agreement(s)
        votes = load_votes(s)
        verdict = verdicts(s, votes)
    kinds = dict(zip(filled.names, filled.crowd.annotator_kind, strict=True))
    rows = {a.annotator: a for a in data.annotators}
    assert set(rows) == set(filled.names)
    reliable = [rows[n].agreement for n in filled.names if kinds[n] == "reliable"]
    adversary = [rows[n].agreement for n in filled.names if kinds[n] == "adversary"]
    assert min(reliable) > 0.8 and max(adversary) < 0.4  # type: ignore[operator]
    # by hand: each vote against the verdict on its line
    index = {key: i for i, key in enumerate(votes.lines)}
    lab = filled.labels
    for j, name in enumerate(filled.names):
        mine = [
            (int(lab.label[r]), int(verdict.verdict[index[filled.line(int(lab.item_idx[r]))]]))
            for r in np.flatnonzero(lab.annotator_idx == j)
        ]
        mine = [(y, v) for y, v in mine if v != 0]
        assert rows[name].lines == len(mine)
        assert rows[name].agreement == pytest.approx(np.mean([y == v for y, v in mine]))
    # pairs: every pair once, by name; counts and shares by brute force
    assert len(data.pairs) == len(filled.names) * (len(filled.names) - 1) // 2
    by_item: dict[tuple[int, int], int] = {}
    for item, ann, label in zip(lab.item_idx, lab.annotator_idx, lab.label, strict=True):
        by_item[(int(ann), int(item))] = int(label)
    for pair in data.pairs:
        a, b = filled.names.index(pair.a), filled.names.index(pair.b)
        shared = [i for (x, i) in by_item if x == a and (b, i) in by_item]
        assert pair.a < pair.b and pair.co_rated == len(shared)
        if shared:
            same = sum(by_item[(a, i)] == by_item[(b, i)] for i in shared)
            assert pair.agreement == pytest.approx(same / len(shared))
        else:
            assert pair.agreement is None


def test_disagreement_ranking(db: Database, filled: CrowdDb) -> None:
    with db.reading() as s:
        data = stats_disagreement.disagreement(s, limit=15)
    counts = _counts(filled.labels)
    scores = stats_disagreement.vote_entropy(counts[:, 0], counts[:, 1])
    scores[: filled.honeypots * LINES] = 0  # honeypot lines are never listed
    assert len(data.lines) == 15
    got = [r.score for r in data.lines]
    assert got == sorted(got, reverse=True)
    assert got == pytest.approx(sorted(scores, reverse=True)[:15])
    honeypot_ids = {filled.ids[k] for k in range(filled.honeypots)}
    for r in data.lines:
        assert r.completion_id not in honeypot_ids and r.up > 0 and r.down > 0
        assert r.text == f"v_{list(filled.ids.values()).index(r.completion_id)}_{r.line} = " + (
            f"f({list(filled.ids.values()).index(r.completion_id)}, {r.line})"
        )
        assert not r.honeypot
    # ties go to the line whose P(correct) is closest to 0.5
    for x, y in itertools.pairwise(data.lines):
        if x.score == y.score:
            assert abs(x.p_correct - 0.5) <= abs(y.p_correct - 0.5)
    top = data.lines[0]
    with db.writing() as s:
        mint_from_line(s, completion_id=top.completion_id, line=top.line, truth=-1)
    with db.reading() as s:
        again = stats_disagreement.disagreement(s, limit=15)
    assert again.lines[0].honeypot and not again.lines[1].honeypot


def test_calibration_bins(db: Database, filled: CrowdDb) -> None:
    with db.reading() as s:
        data = stats_calibration.calibration(s)
        votes = load_votes(s)
        q = verdicts(s, votes).p_correct
    index = {key: i for i, key in enumerate(votes.lines)}
    rated = [i for i in range(filled.honeypots * LINES) if filled.line(i) in index]
    p = np.array([q[index[filled.line(i)]] for i in rated])
    y = (filled.crowd.truth[rated] > 0).astype(float)
    assert data.lines == len(rated) == sum(b.n for b in data.bins) > 0
    assert data.brier == pytest.approx(np.mean((p - y) ** 2))
    which = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        abs(y[which == b].mean() - p[which == b].mean()) * (which == b).mean()
        for b in range(10)
        if (which == b).any()
    )
    assert data.ece == pytest.approx(ece)
    for b in data.bins:
        inside = (p >= b.low) & ((p < b.high) | (b.high == 1.0))
        assert b.n == int(inside.sum())
        if b.n:
            assert b.observed == pytest.approx(y[inside].mean())
            assert b.low <= b.predicted <= b.high  # type: ignore[operator]
    assert data.brier < 0.25  # the crowd knows more than a coin


def test_my_stats_are_mine_only(db: Database, filled: CrowdDb) -> None:
    j = next(i for i, k in enumerate(filled.crowd.annotator_kind) if k == "reliable")
    name = filled.names[j]
    with db.reading() as s:
        me = s.scalar(select(Annotator.id).where(Annotator.name == name))
        data = stats_me.my_stats(s, annotator_id=me, name=name, redundancy=3)  # type: ignore[arg-type]
    lab = filled.labels
    rows = np.flatnonzero(lab.annotator_idx == j)
    assert data.annotator == name and data.ratings == data.lines == len(rows)
    gold = [r for r in rows if lab.item_idx[r] < filled.honeypots * LINES]
    right = sum(lab.label[r] == filled.crowd.truth[lab.item_idx[r]] for r in gold)
    assert data.honeypot_answers == len(gold)
    assert data.honeypot_accuracy == pytest.approx(right / len(gold))
    assert data.honeypot_low <= data.honeypot_accuracy <= data.honeypot_high  # type: ignore[operator]
    # nothing served yet: every model completion (the author's) waits, honeypots not counted
    assert data.review_open == 0
    assert data.review_available == len(filled.ids) - filled.honeypots


def test_mint_from_line(db: Database, filled: CrowdDb) -> None:
    cid = filled.ids[filled.honeypots + 1]

    def honeypots() -> int:
        with db.reading() as s:
            return s.scalar(select(func.count()).select_from(Honeypot))  # type: ignore[return-value]

    before = honeypots()
    with db.writing() as s:
        hid, new = mint_from_line(s, completion_id=cid, line=2, truth=-1)
    assert new and honeypots() == before + 1
    with db.reading() as s:
        row = s.get(Completion, hid)
        truth = s.get(Honeypot, hid).truth  # type: ignore[union-attr]
    assert row.is_honeypot and row.annotator_id is None and truth == [-1]  # type: ignore[union-attr]
    k = filled.honeypots + 1
    assert row.text == f"v_{k}_2 = f({k}, 2)"  # type: ignore[union-attr]
    assert row.prompt == f"def f{k}():\nv_{k}_0 = f({k}, 0)\nv_{k}_1 = f({k}, 1)\n"  # type: ignore[union-attr]
    with db.writing() as s:  # again, another truth: the first one stays
        assert mint_from_line(s, completion_id=cid, line=2, truth=1) == (hid, False)
    with db.reading() as s:
        assert s.get(Honeypot, hid).truth == [-1]  # type: ignore[union-attr]
    bad = [
        ({"completion_id": cid, "line": 4, "truth": 1}, Invalid, "lines 0 to 3, not 4"),
        ({"completion_id": cid, "line": 0, "truth": 0}, Invalid, "truth must be 1"),
        ({"completion_id": filled.ids[0], "line": 0, "truth": 1}, Invalid, "a honeypot already"),
        (
            {"completion_id": filled.ids[0].__class__(int=1), "line": 0, "truth": 1},
            NotFound,
            "no completion",
        ),
    ]
    for kwargs, error, message in bad:
        with pytest.raises(error, match=message), db.writing() as s:
            mint_from_line(s, **kwargs)  # type: ignore[arg-type]
    assert honeypots() == before + 1


def test_a_minted_honeypot_is_never_served_to_who_saw_its_line(db: Database) -> None:
    """Its author and its raters would recognise the line; anyone else may get it."""
    from crlhf_store.review import next_task

    filled = fill_db(db, completions=20, honeypots=4)
    cid = filled.ids[10]
    with db.writing() as s:
        hid, _ = mint_from_line(s, completion_id=cid, line=1, truth=1)
        who = dict(s.execute(select(Annotator.name, Annotator.id)).all())
        newcomer = create_annotator(s, name="newcomer") and s.scalar(
            select(Annotator.id).where(Annotator.name == "newcomer")
        )
    raters = {
        filled.names[a]
        for a, i in zip(filled.labels.annotator_idx, filled.labels.item_idx, strict=True)
        if i // LINES == 10
    }
    assert raters

    def served(annotator_id: int) -> set:  # type: ignore[type-arg]
        got = set()
        with db.writing() as s:
            for _ in range(40):
                task = next_task(
                    s,
                    annotator_id=annotator_id,
                    redundancy=99,
                    honeypot_rate=1.0,
                    honeypot_rate_new=1.0,
                    honeypot_warmup=0,
                )
                if task is None:
                    break
                got.add(task.completion_id)
        return got

    for name in [*raters, "author"]:
        assert hid not in served(who[name]), name
    assert hid in served(newcomer)  # type: ignore[arg-type]
