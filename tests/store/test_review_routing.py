"""Active relabelling (issue 15): after an aggregation run the review queue serves first
the completions whose reward is least certain, to more annotators, and stops asking about
the certain ones. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

from crlhf_store.models import Completion
from sqlalchemy import select
from store_helpers import Api, api_on, completion


def _run(rewards: list[tuple[str, float, float]]) -> dict:
    return {
        "method": "em2",
        "n_labels": 10,
        "n_items": 10,
        "annotators": [],
        "rewards": [
            {"completion_id": cid, "reward": (lo + hi) / 2, "low": lo, "high": hi}
            for cid, lo, hi in rewards
        ],
    }


def _annotators(api: Api, names: list[str]) -> None:
    from crlhf_store.tokens import create_annotator

    with api.app.state.store.db.writing() as s:
        for name in names:
            api.tokens[name] = create_annotator(s, name=name, scope="annotator")


def test_the_widest_reward_interval_is_reviewed_first_and_the_certain_no_more(
    db_url: str, tmp_path: Path
) -> None:
    settings = {"honeypot_rate": 0.0, "honeypot_rate_new": 0.0, "review_redundancy": 2}
    with api_on(db_url, tmp_path, review_redundancy_max=4, **settings) as api:
        ids = []
        for _ in range(4):
            c = completion()
            api.post("/v1/completions", "alice", json={"completions": [c]})
            ids.append(c["id"])
        wide, medium, certain, unrated = ids
        run = _run([(medium, 0.3, 0.7), (wide, 0.1, 0.9), (certain, 0.48, 0.52)])
        assert api.post("/v1/aggregation-runs", "trainer", json=run).status_code == 200
        names = [f"r{i}" for i in range(6)]
        _annotators(api, names)
        first = api.get("/v1/review/next", names[0]).json()["completion_id"]
        second = api.get("/v1/review/next", names[0]).json()["completion_id"]
        assert (first, second) == (wide, medium)  # the widest interval first
        served = Counter([first, second])
        for who in names:
            while (r := api.get("/v1/review/next", who)).status_code == 200:
                served[r.json()["completion_id"]] += 1
        # uncertain ones reach the larger redundancy; the certain one is asked no more;
        # a completion no run has rewarded yet keeps the store's redundancy
        assert served == {wide: 4, medium: 4, unrated: 2}, served
        with api.app.state.store.db.reading() as s:
            assert (
                s.scalar(
                    select(Completion.review_target).where(Completion.id == uuid.UUID(certain))
                )
                == 0
            )
