"""``retained`` events (issue 17, implicit per-line signals) in the store, on SQLite and on
PostgreSQL (``db_url``): strictly validated (422 naming the field, nothing stored), kept
with their per-line payload, exported to the trainer with the completion's own text of each
line next to the developer's correction."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from crlhf_store.models import CompletionEvent
from sqlalchemy import func, select
from store_helpers import Api, api_on, completion


@pytest.fixture
def api(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with api_on(db_url, tmp_path, honeypot_rate_new=0.0, honeypot_rate=0.0) as api:
        yield api


LINES = [
    {"line": 0, "state": "unchanged"},
    {"line": 1, "state": "edited", "distance": 1, "correction": "b = 3"},
    {"line": 2, "state": "deleted", "distance": 12},
]


def retained(cid: str, **kw: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "completion_id": cid,
        "kind": "retained",
        "after_s": 30.0,
        "lines": LINES,
    } | kw


def posted_completion(api: Api, who: str = "alice") -> str:
    c = completion()  # "a = 1\nb = 2\nreturn a + b\n"
    assert api.post("/v1/completions", who, json={"completions": [c]}).status_code == 200
    return str(c["id"])


def n_events(api: Api) -> int:
    with api.app.state.store.db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(CompletionEvent)) or 0)


def test_retention_is_stored_once_and_exported_with_the_correction(api: Api) -> None:
    cid = posted_completion(api)
    accepted = {"event_id": str(uuid.uuid4()), "completion_id": cid, "kind": "accepted"}
    events = [accepted, retained(cid), retained(cid, after_s=300.0)]
    assert api.post("/v1/events", json={"events": events}).json() == {"stored": 3, "duplicates": 0}
    assert api.post("/v1/events", json={"events": events}).json() == {"stored": 0, "duplicates": 3}

    assert api.get("/v1/retention/export", "alice").status_code == 403  # trainers only
    page = api.get("/v1/retention/export", "trainer", params={"limit": 1}).json()
    # one page of one: which of the batch's two comes first is the store's export order
    # (commit order, then row order within a batch), not the order they were posted in
    [first] = page["retention"]
    by_id = {e["event_id"]: e for e in events[1:]}
    assert first["annotator"] == "alice" and first["after_s"] == by_id[first["event_id"]]["after_s"]
    assert [(x["line"], x["state"], x["distance"], x["original"]) for x in first["lines"]] == [
        (0, "unchanged", 0, "a = 1"),
        (1, "edited", 1, "b = 2"),
        (2, "deleted", 12, "return a + b"),
    ]
    assert first["lines"][1]["correction"] == "b = 3"  # the expected edit of "b = 2"
    rest = api.get("/v1/retention/export", "trainer", params={"after": page["next"]}).json()
    [second] = rest["retention"]  # no skip, no repeat
    assert {first["event_id"], second["event_id"]} == set(by_id)
    assert {first["after_s"], second["after_s"]} == {30.0, 300.0}
    end = api.get("/v1/retention/export", "trainer", params={"after": rest["next"]}).json()
    assert end == {"retention": [], "next": None}


BAD: list[tuple[dict[str, Any], list[Any]]] = [
    ({"after_s": None}, ["after_s"]),
    ({"lines": None}, ["lines"]),
    ({"after_s": -1}, ["after_s"]),
    ({"kind": "accepted"}, ["after_s"]),
    ({"lines": [{"line": 0, "state": "kept"}]}, ["lines", 0, "state"]),
    ({"lines": [{"line": 0, "state": "unchanged", "distance": 2}]}, ["lines", 0]),
    ({"lines": [{"line": 0, "state": "deleted", "correction": "x"}]}, ["lines", 0]),
    ({"lines": [{"line": 0, "state": "edited", "distance": 0}]}, ["lines", 0]),
    (
        {"lines": [{"line": 0, "state": "edited", "distance": 1, "correction": "x" * 501}]},
        ["lines", 0, "correction"],
    ),
    ({"lines": [{"line": 0, "state": "deleted"}] * 2}, ["lines"]),
    ({"lines": [{"line": 0, "state": "deleted", "colour": 1}]}, ["lines", 0, "colour"]),
    ({"lines": [{"line": 3, "state": "deleted"}]}, ["lines", 0, "line"]),  # past the end
]


@pytest.mark.parametrize(("change", "where"), BAD)
def test_a_bad_retention_is_422_naming_the_field_and_stores_nothing(
    api: Api, change: dict[str, Any], where: list[Any]
) -> None:
    cid = posted_completion(api)
    good = {"event_id": str(uuid.uuid4()), "completion_id": cid, "kind": "shown"}
    r = api.post("/v1/events", json={"events": [good, retained(cid) | change]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "events", 1, *where]
    assert n_events(api) == 0


def test_only_the_author_reports_retention_of_a_completion(api: Api) -> None:
    cid = posted_completion(api, "bob")
    r = api.post("/v1/events", "alice", json={"events": [retained(cid)]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "events", 0, "completion_id"]
    assert n_events(api) == 0


def test_the_client_leaves_unset_retention_fields_out_for_older_stores() -> None:
    import httpx
    from crlhf_contract.client import StoreClient
    from crlhf_contract.schemas import EventIn

    bodies: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, json={"stored": 1, "duplicates": 0})

    event = EventIn(event_id=uuid.uuid4(), completion_id=uuid.uuid4(), kind="shown")
    client = StoreClient("http://127.0.0.1:1", "t")
    client._http = httpx.Client(
        base_url="http://127.0.0.1:1", transport=httpx.MockTransport(answer)
    )
    client.post_events([event])
    [body] = bodies
    assert b"after_s" not in body and b"lines" not in body and b'"kind":"shown"' in body
