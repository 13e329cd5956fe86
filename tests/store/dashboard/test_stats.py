"""The dashboard's figures (crlhf_store.dashboard.stats_*) on SQLite and PostgreSQL: rows in,
figures out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from crlhf_store.adapters import record_status_change, set_status
from crlhf_store.dashboard import (
    stats_adapters,
    stats_annotators,
    stats_honeypots,
    stats_overview,
    stats_rewards,
)
from crlhf_store.db import Database
from crlhf_store.models import (
    Adapter,
    AggregationRun,
    Annotator,
    AnnotatorReliability,
    Completion,
    CompletionEvent,
    CompletionReward,
    Honeypot,
    LineRating,
)
from sqlalchemy.orm import Session


def annotator(s: Session, name: str) -> int:
    row = Annotator(name=name)
    s.add(row)
    s.flush()
    return row.id


def completion(s: Session, *, owner: int | None, language: str = "python", lines: int = 2):
    cid = uuid.uuid4()
    s.add(
        Completion(
            id=cid,
            annotator_id=owner,
            prompt="p",
            language=language,
            text="\n".join(["x"] * lines),
            n_lines=lines,
            model="m" if owner else "",
            content_hash=cid.hex,
            is_honeypot=owner is None,
        )
    )
    s.flush()
    return cid


def rate(s: Session, who: int, cid: uuid.UUID, line: int, label: int) -> None:
    s.add(
        LineRating(
            event_id=uuid.uuid4(), completion_id=cid, annotator_id=who, line=line, label=label
        )
    )
    s.flush()


def event(s: Session, who: int, cid: uuid.UUID, kind: str) -> None:
    s.add(CompletionEvent(event_id=uuid.uuid4(), completion_id=cid, annotator_id=who, kind=kind))
    s.flush()


def test_wilson_interval_and_binned_quantiles() -> None:
    assert stats_annotators.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = stats_annotators.wilson_interval(10, 10)
    assert 0.7 < low < 1.0 and high == 1.0
    hist = [0] * 20
    hist[10] = 4  # four rewards in [0.50, 0.55)
    assert stats_rewards._quantile(hist, 0.5) == pytest.approx(0.525)
    assert stats_rewards._quantile(hist, 0.0) == pytest.approx(0.5)


def test_an_empty_store(db: Database) -> None:
    with db.reading() as s:
        overview = stats_overview.overview(s, days=5)
        assert overview.ratings == 0 and overview.acceptance_rate is None
        assert len(overview.days) == 5
        assert overview.days[-1].day == datetime.now(UTC).date()
        people = stats_annotators.annotators(s)
        assert people.annotators == [] and people.run_id is None
        assert stats_rewards.rewards(s) == stats_rewards.RewardStats(runs=[], languages=[])
        assert stats_adapters.adapters(s) == []
        none = stats_honeypots.HoneypotStats(honeypots=0, lines=0, coverage=[])
        assert stats_honeypots.honeypots(s) == none


def test_overview_counts_distinct_completions(db: Database) -> None:
    with db.writing() as s:
        ada = annotator(s, "ada")
        c1, c2 = completion(s, owner=ada), completion(s, owner=ada)
        honeypot = completion(s, owner=None)
        for kind in ("shown", "shown", "accepted", "partial"):  # a replayed outbox
            event(s, ada, c1, kind)
        event(s, ada, c2, "shown")
        rate(s, ada, c1, 0, 1)
        rate(s, ada, c1, 1, -1)
        rate(s, ada, honeypot, 0, 1)
    with db.reading() as s:
        o = stats_overview.overview(s, days=2)
    assert (o.completions, o.shown, o.accepted, o.rated) == (2, 2, 1, 1)
    assert o.acceptance_rate == 0.5 and o.ratings == 3 and o.annotators == 1
    assert o.days[-1].ratings == 3 and o.days[-1].active_annotators == 1
    assert o.days[-1].shown == 2 and o.days[-1].accepted == 1
    with db.reading() as s:
        later = stats_overview.overview(s, days=2, now=datetime.now(UTC) + timedelta(days=10))
    assert later.days[-1].ratings == 0 and later.active_annotators_7d == 0


def test_annotators_newest_honeypot_label_counts_and_latest_run(db: Database) -> None:
    with db.writing() as s:
        ada, bob = annotator(s, "ada"), annotator(s, "<b>bob</b>")
        pot = completion(s, owner=None)
        s.add(Honeypot(completion_id=pot, truth=[1, -1]))
        rate(s, ada, pot, 0, -1)  # wrong, then corrected: the newest counts
        rate(s, ada, pot, 0, 1)
        rate(s, ada, pot, 1, -1)
        rate(s, bob, pot, 0, -1)
        for method, pi in (("mv", 0.5), ("em2", 0.9)):
            run = AggregationRun(method=method, n_labels=4, n_items=2)
            s.add(run)
            s.flush()
            s.add(
                AnnotatorReliability(
                    run_id=run.id,
                    annotator="ada",
                    annotator_id=ada,
                    reliability=pi,
                    low=pi - 0.1,
                    high=pi + 0.05,
                    spammer_score=0.8,
                    flag="ok",
                )
            )
            s.add(
                AnnotatorReliability(
                    run_id=run.id,
                    annotator="ghost",  # in the run, but no such annotator in the store
                    reliability=0.5,
                    low=0.4,
                    high=0.6,
                    spammer_score=0.0,
                    flag="spammer",
                )
            )
    with db.reading() as s:
        data = stats_annotators.annotators(s)
    rows = {r.annotator: r for r in data.annotators}
    assert data.method == "em2" and list(rows) == ["<b>bob</b>", "ada", "ghost"]
    assert rows["ada"].honeypot_answers == 2 and rows["ada"].honeypot_accuracy == 1.0
    assert rows["ada"].reliability == 0.9 and rows["ada"].ratings == 3
    assert rows["<b>bob</b>"].honeypot_accuracy == 0.0 and rows["<b>bob</b>"].reliability is None
    assert rows["ghost"].flag == "spammer" and rows["ghost"].ratings == 0
    assert rows["ada"].last_active is not None and rows["ghost"].last_active is None


def test_rewards_are_binned_the_same_on_both_databases(db: Database) -> None:
    with db.writing() as s:
        ada = annotator(s, "ada")
        py = [completion(s, owner=ada) for _ in range(4)]
        go = completion(s, owner=ada, language="go")
        ids = []
        for values in ([0.2, 0.2, 0.2, 0.2, 0.2], [0.0, 0.05, 0.5, 0.999, 1.0]):
            run = AggregationRun(method="em2", n_labels=1, n_items=1)
            s.add(run)
            s.flush()
            ids.append(run.id)
            for cid, v in zip([*py, go], values, strict=True):
                s.add(CompletionReward(run_id=run.id, completion_id=cid, reward=v, low=v, high=v))
    with db.reading() as s:
        data = stats_rewards.rewards(s)
        assert [r.run_id for r in stats_rewards.rewards(s, runs=1).runs] == ids[1:]
    assert [r.run_id for r in data.runs] == ids
    first, last = data.runs[0].rewards, data.runs[1].rewards
    assert first.histogram[4] == 5 and first.mean == pytest.approx(0.2)
    assert [i for i, n in enumerate(last.histogram) if n] == [0, 1, 10, 19]
    assert last.histogram[19] == 2 and last.n == 5
    assert last.p10 <= last.p25 <= last.median <= last.p75 <= last.p90  # type: ignore[operator]
    languages = {lang.language: lang.rewards for lang in data.languages}
    assert languages["go"].n == 1 and languages["go"].histogram[19] == 1
    assert languages["python"].n == 4


def test_adapters_timeline_pass_at_k_and_who_published(db: Database) -> None:
    with db.writing() as s:
        for version, parent, p1 in (("v1", None, 0.3), ("v2", "v1", 0.4)):
            s.add(
                Adapter(
                    version=version,
                    parent=parent,
                    base_model="tiny",
                    sha256="0" * 64,
                    size=1,
                    storage_key=version,
                    files={},
                    metrics={"humaneval/pass@1": p1, "heldout/reward": 0.5, "gate": "ok"}
                    | ({"gate_decision": GATE} if version == "v2" else {}),
                    created_by="trainer",
                )
            )
        s.flush()
        set_status(s, version="v1", status="published", actor="trainer")  # the registry records
        set_status(s, version="v1", status="published", actor="trainer")  # once
        set_status(s, version="v1", status="retired", actor="ops")
        set_status(s, version="v2", status="published", actor="admin")
        record_status_change(s, version="nope", status="published", actor="admin")
    with db.reading() as s:
        rows = {r.version: r for r in stats_adapters.adapters(s)}
    assert [c.status for c in rows["v1"].history] == ["published", "retired"]
    assert rows["v1"].published_by == "trainer" and rows["v2"].published_by == "admin"
    v2 = {m.metric: (m.before, m.after) for m in rows["v2"].pass_at}
    assert v2 == {"humaneval/pass@1": (0.3, 0.4), "heldout/reward": (0.5, 0.5)}
    assert {m.before for m in rows["v1"].pass_at} == {None}
    assert rows["v1"].gate is None and rows["v1"].gate_reason == "ok"
    gate = rows["v2"].gate
    assert gate is not None and gate.decision == "not enough evidence"
    (check,) = gate.checks
    assert (check.name, check.n, check.low, check.verdict) == ("heldout/x", 4, -0.2, "too few")


GATE = {
    "decision": "not enough evidence",
    "passed": False,
    "reason": "not enough evidence (heldout/x has 4 items)",
    "checks": [
        {
            "name": "heldout/x",
            "n": 4,
            "baseline": 0.1,
            "candidate": 0.05,
            "delta": -0.05,
            "low": -0.2,
            "high": 0.1,
            "margin": 0.02,
            "verdict": "too few",
        }
    ],
}


def test_honeypot_coverage(db: Database) -> None:
    with db.writing() as s:
        ada, bob = annotator(s, "ada"), annotator(s, "bob")
        pots = [completion(s, owner=None, lines=3) for _ in range(4)]
        for cid in pots:
            s.add(Honeypot(completion_id=cid, truth=[1, 1, -1]))
        s.flush()
        rate(s, ada, pots[0], 0, 1)
        rate(s, ada, pots[0], 1, 1)
        rate(s, ada, pots[1], 0, 1)
        rate(s, bob, pots[2], 2, -1)
        rate(s, bob, completion(s, owner=ada), 0, 1)  # not a honeypot
    with db.reading() as s:
        data = stats_honeypots.honeypots(s)
    assert data.honeypots == 4 and data.lines == 12
    cover = {c.annotator: (c.answered, c.lines, c.share) for c in data.coverage}
    assert cover == {"ada": (2, 3, 0.5), "bob": (1, 1, 0.25)}
