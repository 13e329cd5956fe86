"""Accepted and retained characters (crlhf_store.dashboard.stats_retention) on SQLite and
PostgreSQL: accept and retention events in, characters per day and adapter version out."""

from __future__ import annotations

import doctest
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from crlhf_store.dashboard import stats_retention
from crlhf_store.db import Database
from crlhf_store.models import Annotator, Completion, CompletionEvent
from sqlalchemy.orm import Session

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
YESTERDAY = NOW - timedelta(days=1)


def completion(s: Session, owner: int, text: str, version: str | None, honeypot: bool = False):
    cid = uuid.uuid4()
    s.add(
        Completion(
            id=cid,
            annotator_id=None if honeypot else owner,
            prompt="p",
            text=text,
            n_lines=len(text.split("\n")),
            model="m",
            adapter_version=version,
            content_hash=cid.hex,
            is_honeypot=honeypot,
        )
    )
    s.flush()
    return cid


def event(s: Session, who: int, cid: uuid.UUID, kind: str, when: datetime, **kw: Any) -> None:
    s.add(
        CompletionEvent(
            event_id=uuid.uuid4(),
            completion_id=cid,
            annotator_id=who,
            kind=kind,
            created_at=when,
            **kw,
        )
    )
    s.flush()


def check(s: Session, who: int, cid: uuid.UUID, after_s: float, *lines: dict) -> None:
    payload = {"after_s": after_s, "lines": list(lines)}
    event(s, who, cid, "retained", NOW + timedelta(seconds=after_s), payload=payload)


def line(i: int, state: str, distance: int = 0) -> dict[str, Any]:
    return {"line": i, "state": state, "distance": distance}


def figures(r: stats_retention.RetentionRow) -> tuple[int, int, int, int]:
    return (r.completions, r.accepted_chars, r.checked_chars, r.retained_chars)


def test_the_docstring_examples_hold() -> None:
    failed, attempted = doctest.testmod(stats_retention)
    assert attempted and not failed


def test_an_empty_store(db: Database) -> None:
    with db.reading() as s:
        got = stats_retention.retention(s, days=5)
    assert len(got.days) == 5 and got.days[-1] == datetime.now(UTC).date()
    assert (got.versions, got.per_day, got.per_version) == ([], [], [])


def test_characters_accepted_and_retained_per_day_and_adapter_version(db: Database) -> None:
    with db.writing() as s:
        ada = Annotator(name="ada")
        s.add(ada)
        s.flush()
        who = ada.id
        # v1: 5 + 7 + 3 characters (indentation counts, trailing blanks and breaks do not)
        full = completion(s, who, "abcde\n  fghij  \nxyz\n", "v1")
        event(s, who, full, "accepted", NOW)
        check(s, who, full, 30.0, line(0, "unchanged"), line(1, "unchanged"), line(2, "unchanged"))
        # the latest check counts: 5 kept, 7 - 3 of the edited line, the deleted one none
        check(s, who, full, 300.0, line(0, "unchanged"), line(1, "edited", 3), line(2, "deleted"))
        # v1 again: rewritten beyond its length, retains nothing
        gone = completion(s, who, "ab", "v1")
        event(s, who, gone, "accepted", NOW)
        check(s, who, gone, 300.0, line(0, "edited", 9))
        # v2: a partial accept grown from 8 to 12 characters: "abcdefghij" and "k"; no check yet
        partial = completion(s, who, "abcdefghij\nklmno", "v2")
        event(s, who, partial, "partial", NOW, accepted_chars=8)
        event(s, who, partial, "partial", NOW + timedelta(seconds=1), accepted_chars=12)
        # the base model alone, yesterday, all kept
        base = completion(s, who, "0123\n", None)
        event(s, who, base, "accepted", YESTERDAY)
        check(s, who, base, 30.0, line(0, "unchanged"))
        # never counted: a honeypot, a completion only shown
        pot = completion(s, who, "honeypot line", "v1", honeypot=True)
        event(s, who, pot, "accepted", NOW)
        shown = completion(s, who, "shown only", "v1")
        event(s, who, shown, "shown", NOW)
    with db.reading() as s:
        got = stats_retention.retention(s, days=7, now=NOW)
    assert got.versions == ["base", "v1", "v2"]  # by first accept
    totals = {r.adapter_version: r for r in got.per_version}
    v1, v2, base_ = totals["v1"], totals["v2"], totals["base"]
    assert figures(v1) == (2, 17, 17, 9)
    assert v1.retention == pytest.approx(9 / 17)
    assert figures(v2) == (1, 11, 0, 0)
    assert v2.retention is None  # not checked is not lost
    assert (base_.accepted_chars, base_.retained_chars, base_.retention) == (4, 4, 1.0)
    days = [(r.day, r.adapter_version, r.accepted_chars) for r in got.per_day]
    assert days == [
        (YESTERDAY.date(), "base", 4),
        (NOW.date(), "v1", 17),
        (NOW.date(), "v2", 11),
    ]
    with db.reading() as s:
        today = stats_retention.retention(s, days=1, now=NOW)
    assert today.versions == ["v1", "v2"]  # yesterday's accept is outside the window


def test_a_full_accept_after_a_partial_one_counts_the_whole_text(db: Database) -> None:
    with db.writing() as s:
        ada = Annotator(name="ada")
        s.add(ada)
        s.flush()
        cid = completion(s, ada.id, "abcdef\nghi", "v3")
        event(s, ada.id, cid, "partial", NOW, accepted_chars=3)
        event(s, ada.id, cid, "accepted", NOW + timedelta(seconds=2))
        event(s, ada.id, cid, "partial", NOW + timedelta(seconds=3), accepted_chars=1)
        check(s, ada.id, cid, 300.0, line(0, "unchanged"), line(1, "unchanged"))
    with db.reading() as s:
        (row,) = stats_retention.retention(s, days=2, now=NOW).per_version
    assert (row.accepted_chars, row.retained_chars, row.retention) == (9, 9, 1.0)
