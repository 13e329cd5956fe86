"""The export cursor rule (crlhf_store.export) against out-of-order commits on PostgreSQL."""

from __future__ import annotations

import uuid

from crlhf_contract.schemas import CompletionIn, RatingIn
from crlhf_store.db import Database
from crlhf_store.export import export_labels
from crlhf_store.ingest import store_completions, store_ratings
from crlhf_store.tokens import create_annotator


def test_a_rating_that_commits_late_is_exported_after_the_cursor(fresh_pg_url: str) -> None:
    db = Database(fresh_pg_url, pool_size=3, max_overflow=0)
    db.migrate()
    with db.writing() as s:
        create_annotator(s, name="alice")
        cid = uuid.uuid4()
        store_completions(
            s,
            annotator_id=1,
            completions=[CompletionIn(id=cid, prompt="", text="a\nb\n", model="m")],
        )

    def ratings(n: int) -> list[RatingIn]:
        return [
            RatingIn(event_id=uuid.uuid4(), completion_id=cid, line=0, label=1) for _ in range(n)
        ]

    late = db._write()  # noqa: SLF001 - a transaction held open on purpose
    late.begin()
    store_ratings(late, annotator_id=1, ratings=ratings(2))  # takes the smaller ids, uncommitted
    with db.writing() as s:
        store_ratings(s, annotator_id=1, ratings=ratings(3))  # larger ids, committed first
    with db.writing() as s:
        first = export_labels(s, after=0, limit=100)
    assert len(first.labels) == 3 and min(x.rating_id for x in first.labels) > 2
    late.commit()
    late.close()
    with db.writing() as s:
        second = export_labels(s, after=int(first.next or 0), limit=100)
    assert sorted(x.rating_id for x in second.labels) == [1, 2]  # not skipped
    with db.writing() as s:
        assert export_labels(s, after=int(second.next or 0), limit=100).labels == []
    db.dispose()
