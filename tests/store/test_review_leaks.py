"""The review queue leaks nothing that tells a honeypot from real work (issue 15).

Each test is a way a colluding annotator told them apart on the old queue: the latency of
``GET /v1/review/next``, how many annotators see one item, a queue that serves only
honeypots once real work runs out, slots that never come back, and concurrent calls that
over-assign on PostgreSQL. All run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from crlhf_contract.schemas import HoneypotIn
from crlhf_store.honeypots import import_honeypots
from crlhf_store.models import Annotator, Completion, Honeypot, ReviewAssignment
from sqlalchemy import insert, select, update
from store_helpers import Api, api_on


def add_completions(api: Api, n: int, author: str = "alice") -> list[uuid.UUID]:
    """``n`` completions of ``author`` straight into the database (fast, like ingest)."""
    with api.app.state.store.db.writing() as s:
        author_id = s.scalar(select(Annotator.id).where(Annotator.name == author))
        rows = [
            {
                "id": uuid.uuid4(),
                "annotator_id": author_id,
                "prompt": f"def f{i}(x):\n",
                "suffix": "",
                "language": "python",
                "text": f"    y = x + {i}\n    return y * {i}\n",
                "n_lines": 2,
                "model": "tiny",
                "content_hash": hashlib.sha256(str(i).encode()).hexdigest(),
                "is_honeypot": False,
            }
            for i in range(n)
        ]
        s.execute(insert(Completion), rows)
    return [r["id"] for r in rows]


def add_honeypots(api: Api, n: int) -> set[uuid.UUID]:
    items = [
        HoneypotIn(prompt=f"def g{i}(x):\n", text=f"    y = x - {i}\n    return y\n", truth=[1, -1])
        for i in range(n)
    ]
    with api.app.state.store.db.writing() as s:
        import_honeypots(s, honeypots=items)
        return {uuid.UUID(str(c)) for c in s.scalars(select(Honeypot.completion_id))}


def auc(positives: list[float], negatives: list[float]) -> float:
    """P(a positive's value > a negative's), ties half: how well a threshold separates."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def drain(api: Api, who: str, limit: int = 1000) -> list[uuid.UUID]:
    served = []
    for _ in range(limit):
        r = api.get("/v1/review/next", who)
        if r.status_code == 204:
            break
        assert r.status_code == 200, r.text
        served.append(uuid.UUID(r.json()["completion_id"]))
    return served


@pytest.mark.slow  # 400 timed tasks from a store of 2,000 completions: 10-20 s a backend
def test_latency_does_not_tell_honeypots_from_real_tasks(db_url: str, tmp_path: Path) -> None:
    settings = {"honeypot_rate": 0.5, "honeypot_rate_new": 0.5, "review_redundancy": 3}
    with api_on(db_url, tmp_path, **settings) as api:
        api.app.state.store.rng = random.Random(15)
        add_completions(api, 2100)
        pots = add_honeypots(api, 300)
        latency: dict[bool, list[float]] = {True: [], False: []}
        for who in ("bob", "carol", "trainer", "admin"):
            for i in range(110):
                start = time.perf_counter()
                r = api.get("/v1/review/next", who)
                elapsed = time.perf_counter() - start
                assert r.status_code == 200, r.text
                if i >= 10:  # warm-up calls aside
                    latency[uuid.UUID(r.json()["completion_id"]) in pots].append(elapsed)
        assert sum(map(len, latency.values())) >= 400
        assert len(latency[True]) >= 100 and len(latency[False]) >= 100
        score = auc(latency[True], latency[False])
        assert 0.4 <= score <= 0.6, f"latency tells honeypots apart: AUC {score:.3f}"


def test_a_honeypot_is_seen_by_as_many_annotators_as_a_completion(
    db_url: str, tmp_path: Path
) -> None:
    names = [f"n{i}" for i in range(12)]
    settings = {"honeypot_rate": 0.5, "honeypot_rate_new": 0.5, "review_redundancy": 3}
    with api_on(db_url, tmp_path, **settings) as api:
        api.app.state.store.rng = random.Random(1)
        _more_annotators(api, names)
        real = set(add_completions(api, 40))
        pots = add_honeypots(api, 10)
        served = Counter(cid for who in names for cid in drain(api, who))
        assert all(served[c] == 3 for c in real)  # every completion reached its redundancy
        exposures = [served[p] for p in pots]
        assert max(exposures) <= 3, exposures  # old queue: every annotator saw every one
        assert max(exposures) - min(exposures) <= 1, exposures  # rotated, the least seen first


def test_the_queue_never_serves_only_honeypots(db_url: str, tmp_path: Path) -> None:
    """Once real work runs out, the answer is 204, not a honeypot (old: 30 of 36)."""
    names = [f"n{i}" for i in range(10)]
    settings = {"honeypot_rate": 0.2, "honeypot_rate_new": 0.2, "review_redundancy": 3}
    with api_on(db_url, tmp_path, **settings) as api:
        api.app.state.store.rng = random.Random(2)
        _more_annotators(api, names)
        add_completions(api, 30)
        pots = add_honeypots(api, 200)
        per = {who: drain(api, who) for who in names}
        late = per[names[-1]]
        assert not late or any(c not in pots for c in late)
        for who in names:
            assert api.get("/v1/review/next", who).status_code == 204  # asking again: still none
        n_pots = sum(c in pots for s in per.values() for c in s)
        n_all = sum(map(len, per.values()))
        assert n_pots / n_all <= 0.35, f"{n_pots} honeypots of {n_all} tasks"


def test_skipped_and_expired_tasks_free_their_slots(db_url: str, tmp_path: Path) -> None:
    settings = {"honeypot_rate": 0.0, "honeypot_rate_new": 0.0, "review_redundancy": 1}
    with api_on(db_url, tmp_path, **settings) as api:
        (cid,) = add_completions(api, 1)
        task = api.get("/v1/review/next", "bob").json()
        assert api.get("/v1/review/next", "carol").status_code == 204  # the one slot is bob's
        assert api.post(f"/v1/review/{task['task_id']}/skip", "carol").status_code == 404
        assert api.post(f"/v1/review/{task['task_id']}/skip", "bob").status_code == 204
        carols = api.get("/v1/review/next", "carol").json()
        assert carols["completion_id"] == str(cid)
        assert api.get("/v1/review/next", "bob").status_code == 204  # never the same item twice
        # carol walks away: past its expiry (24 h by default) the slot comes back
        with api.app.state.store.db.writing() as s:
            s.execute(
                update(ReviewAssignment)
                .where(ReviewAssignment.id == uuid.UUID(carols["task_id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        assert api.get("/v1/review/next", "trainer").json()["completion_id"] == str(cid)
        # an answered task never expires
        api.post(
            "/v1/ratings",
            "trainer",
            json={
                "ratings": [
                    {
                        "event_id": str(uuid.uuid4()),
                        "completion_id": str(cid),
                        "line": 0,
                        "label": 1,
                    }
                ]
            },
        )
        with api.app.state.store.db.writing() as s:
            s.execute(update(ReviewAssignment).values(expires_at=datetime.now(UTC)))
        assert api.get("/v1/review/next", "admin").status_code == 204


def test_default_assignment_expiry_is_a_day(db_url: str, tmp_path: Path) -> None:
    with api_on(db_url, tmp_path, honeypot_rate=0.0, honeypot_rate_new=0.0) as api:
        add_completions(api, 1)
        task = api.get("/v1/review/next", "bob").json()
        with api.app.state.store.db.reading() as s:
            row = s.get(ReviewAssignment, uuid.UUID(task["task_id"]))
            assert row is not None and row.expires_at is not None
            assert abs((row.expires_at - row.created_at) - timedelta(hours=24)) < timedelta(
                seconds=5
            )


def test_concurrent_annotators_never_over_assign(db_url: str, start_store) -> None:  # type: ignore[no-untyped-def]
    """32 annotators ask at once, again and again: no item gets more than its redundancy."""
    store = start_store(
        None if db_url.startswith("sqlite") else db_url,
        review_redundancy="3",
        honeypot_rate="0.2",
        honeypot_rate_new="0.2",
        pool_size="40",
    )
    from crlhf_contract.schemas import CompletionIn

    with store.client() as alice:
        alice.post_completions(
            [
                CompletionIn(id=uuid.uuid4(), prompt=f"p{i}", text="x = 1\ny = 2\n", model="m")
                for i in range(40)
            ]
        )
    clients = [store.client(store.new_token(f"c{i}")) for i in range(32)]
    barrier = threading.Barrier(len(clients))
    served: list[uuid.UUID] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(client) -> None:  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
            while (task := client.review_next()) is not None:
                with lock:
                    served.append(task.completion_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    assert not errors, errors
    counts = Counter(served)
    assert len(counts) == 40 and set(counts.values()) == {3}, counts.most_common(3)


def _more_annotators(api: Api, names: list[str]) -> None:
    from crlhf_store.tokens import create_annotator

    with api.app.state.store.db.writing() as s:
        for name in names:
            api.tokens[name] = create_annotator(s, name=name, scope="annotator")
