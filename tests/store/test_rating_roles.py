"""Ratings that count once, from the right people (issue 15), on SQLite and PostgreSQL.

One annotator's newest rating of a line counts and the store flags the older ones; an
author's ratings of their own completion are a signal of their own, never a crowd vote;
nobody rates what was neither theirs nor served to them; a rate limit and a daily quota
answer 429 with ``Retry-After``.
"""

from __future__ import annotations

from pathlib import Path

from crlhf_trainer.aggregation.labels import LabelSet
from store_helpers import Api, api_on, completion, rating

NO_HONEYPOTS = {"honeypot_rate": 0.0, "honeypot_rate_new": 0.0}


def post_completion(api: Api, who: str) -> str:
    c = completion()
    assert api.post("/v1/completions", who, json={"completions": [c]}).status_code == 200
    return str(c["id"])


def export(api: Api) -> list[dict]:
    return api.get("/v1/labels/export", "trainer").json()["labels"]


def test_the_newest_rating_of_a_line_counts_and_the_store_says_so(
    db_url: str, tmp_path: Path
) -> None:
    with api_on(db_url, tmp_path, **NO_HONEYPOTS) as api:
        cid = post_completion(api, "alice")
        assert api.get("/v1/review/next", "bob").json()["completion_id"] == cid
        old = [rating(cid, 0, 1) for _ in range(20)]  # the same vote, 20 rows
        assert api.post("/v1/ratings", "bob", json={"ratings": old}).status_code == 200
        new = rating(cid, 0, -1)
        api.post("/v1/ratings", "bob", json={"ratings": [new, rating(cid, 1, 1)]})
        # a retry of the old batch is a no-op: it supersedes nothing
        assert api.post("/v1/ratings", "bob", json={"ratings": old}).json()["duplicates"] == 20
        rows = export(api)
        current = [(x["line"], x["label"]) for x in rows if not x["superseded"]]
        assert sorted(current) == [(0, -1), (1, 1)] and len(rows) == 22  # history kept
        (only,) = [x for x in rows if x["line"] == 0 and not x["superseded"]]
        assert only["rating_id"] == max(x["rating_id"] for x in rows if x["line"] == 0)


def test_an_authors_ratings_of_their_own_completion_are_no_crowd_vote(
    db_url: str, tmp_path: Path
) -> None:
    with api_on(db_url, tmp_path, **NO_HONEYPOTS) as api:
        cid = post_completion(api, "alice")
        api.post("/v1/ratings", "alice", json={"ratings": [rating(cid, 0, 1), rating(cid, 1, 1)]})
        api.get("/v1/review/next", "bob")
        api.post("/v1/ratings", "bob", json={"ratings": [rating(cid, 0, -1)]})
        page = api.get("/v1/labels/export", "trainer").json()
        assert {(x["annotator"], x["own"]) for x in page["labels"]} == {
            ("alice", True),
            ("bob", False),
        }
        labels = LabelSet.from_export([page])
        assert labels.annotators == ["bob"] and labels.label.tolist() == [-1]


def test_nobody_rates_what_was_neither_theirs_nor_served_to_them(
    db_url: str, tmp_path: Path
) -> None:
    with api_on(db_url, tmp_path, **NO_HONEYPOTS) as api:
        cid = post_completion(api, "alice")
        batch = {"ratings": [rating(cid, 0, 1), rating(cid, 1, 1)]}
        r = api.post("/v1/ratings", "bob", json=batch)
        assert r.status_code == 422
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "ratings", 0, "completion_id"] and cid in error["msg"]
        assert export(api) == []  # all or nothing
        assert api.get("/v1/review/next", "bob").json()["completion_id"] == cid
        assert api.post("/v1/ratings", "bob", json=batch).status_code == 200


def test_a_rate_limit_answers_429_with_retry_after(db_url: str, tmp_path: Path) -> None:
    with api_on(db_url, tmp_path, rating_rate_per_minute=5, rating_quota_per_day=8) as api:
        cids = [post_completion(api, "alice") for _ in range(3)]
        ok = api.post("/v1/ratings", json={"ratings": [rating(cids[0], i % 3) for i in range(4)]})
        assert ok.status_code == 200
        r = api.post("/v1/ratings", json={"ratings": [rating(cids[0], 0), rating(cids[0], 1)]})
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60, r.headers
        assert "5" in r.json()["detail"]
        assert api.post("/v1/ratings", "bob", json={"ratings": []}).status_code == 200
        big = api.post("/v1/ratings", json={"ratings": [rating(cids[1], 0) for _ in range(6)]})
        assert big.status_code == 422  # more than a minute's worth in one batch


def test_a_daily_quota_answers_429_until_the_oldest_rating_ages_out(
    db_url: str, tmp_path: Path
) -> None:
    with api_on(db_url, tmp_path, rating_rate_per_minute=0, rating_quota_per_day=3) as api:
        cid = post_completion(api, "alice")
        assert api.post("/v1/ratings", json={"ratings": [rating(cid, 0)]}).status_code == 200
        api.post("/v1/ratings", json={"ratings": [rating(cid, 1), rating(cid, 2)]})
        r = api.post("/v1/ratings", json={"ratings": [rating(cid, 0)]})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60
