"""Every endpoint of the store, in process, on SQLite and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest
from crlhf_contract.digest import manifest_digest
from crlhf_contract.schemas import (
    MAX_COMPLETION_TOKENS,
    MAX_PROMPT_TOKENS,
    TOKEN_ID_END,
    HoneypotIn,
    ReviewTask,
)
from crlhf_store.errors import Invalid
from crlhf_store.honeypots import import_honeypots, parse_jsonl
from crlhf_store.models import ApiToken, LineRating
from sqlalchemy import func, select, text
from store_helpers import Api, api_on, completion, rating


@pytest.fixture
def api(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with api_on(db_url, tmp_path, honeypot_rate_new=0.0, honeypot_rate=0.0) as api:
        yield api


def n_ratings(api: Api) -> int:
    with api.app.state.store.db.reading() as s:
        return int(s.scalar(select(func.count()).select_from(LineRating)) or 0)


def post_completion(api: Api, who: str = "alice", **kw) -> dict:  # type: ignore[no-untyped-def]
    c = completion(**kw)
    r = api.post("/v1/completions", who, json={"completions": [c]})
    assert r.status_code == 200, r.text
    return c


# --- auth -----------------------------------------------------------------------------------


def test_health_and_readiness_need_no_token(api: Api) -> None:
    assert api.http.get("/healthz").json() == {"status": "ok"}
    assert api.http.get("/readyz").status_code == 200


def test_me_names_the_annotator_and_the_nested_scopes(api: Api) -> None:
    assert api.get("/v1/me").json() == {"annotator": "alice", "scopes": ["annotator"]}
    assert api.get("/v1/me", "admin").json()["scopes"] == ["annotator", "trainer", "admin"]


AUTHED = [
    ("GET", "/v1/me"),
    ("POST", "/v1/ratings"),
    ("GET", "/v1/review/next"),
    ("GET", "/v1/adapters"),
    ("GET", "/v1/labels/export"),
]
TRAINER_ONLY = [
    ("GET", "/v1/labels/export"),
    ("GET", "/v1/completions/export"),
    ("POST", "/v1/aggregation-runs"),
    ("POST", "/v1/adapters"),
    ("POST", "/v1/adapters/v1/publish"),
    ("POST", "/v1/adapters/v1/retire"),
]


def test_missing_or_unknown_token_is_401_and_a_lower_scope_403(api: Api) -> None:
    for method, path in AUTHED:
        assert api.http.request(method, path).status_code == 401, path
        for bad in ("Bearer crlhf_not-a-token", "Basic eDp5", "Bearer"):
            r = api.http.request(method, path, headers={"Authorization": bad})
            assert r.status_code == 401, (path, bad)
    for method, path in TRAINER_ONLY:
        r = api.call(method, path, "alice")
        assert r.status_code == 403, path
        assert "trainer" in r.json()["detail"]


def test_tokens_are_stored_as_hashes_only(api: Api) -> None:
    with api.app.state.store.db.reading() as s:
        rows = s.scalars(select(ApiToken)).all()
        dump = " ".join(str(v) for row in s.execute(text("SELECT * FROM api_tokens")) for v in row)
    assert len(rows) == len(api.tokens)
    for token in api.tokens.values():
        assert token not in dump
        assert hashlib.sha256(token.encode()).hexdigest() in {r.token_hash for r in rows}


# --- completions, events, ratings -----------------------------------------------------------


def test_completion_repost_is_a_noop_and_other_content_is_409(api: Api) -> None:
    c = completion()
    assert api.post("/v1/completions", json={"completions": [c]}).json() == {
        "stored": 1,
        "duplicates": 0,
    }
    assert api.post("/v1/completions", json={"completions": [c, c]}).json() == {
        "stored": 0,
        "duplicates": 2,
    }
    fresh = completion()
    changed = c | {"text": "something else"}
    r = api.post("/v1/completions", json={"completions": [fresh, changed]})
    assert r.status_code == 409 and "completions[1]" in r.json()["detail"]
    page = api.get("/v1/completions/export", "trainer").json()
    assert [x["id"] for x in page["completions"]] == [c["id"]]  # `fresh` was not stored either


def test_events_are_idempotent_and_need_a_known_completion(api: Api) -> None:
    c = post_completion(api)
    events = [
        {"event_id": str(uuid.uuid4()), "completion_id": c["id"], "kind": k}
        for k in ("shown", "accepted")
    ]
    assert api.post("/v1/events", json={"events": events}).json() == {"stored": 2, "duplicates": 0}
    assert api.post("/v1/events", json={"events": events}).json() == {"stored": 0, "duplicates": 2}
    bad = events + [
        {"event_id": str(uuid.uuid4()), "completion_id": str(uuid.uuid4()), "kind": "shown"}
    ]
    r = api.post("/v1/events", json={"events": bad})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "events", 2, "completion_id"]


def test_ratings_are_idempotent_by_event_id(api: Api) -> None:
    c = post_completion(api)
    batch = {"ratings": [rating(c["id"], line) for line in range(3)]}
    assert api.post("/v1/ratings", json=batch).json() == {"stored": 3, "duplicates": 0}
    assert api.post("/v1/ratings", json=batch).json() == {"stored": 0, "duplicates": 3}
    assert n_ratings(api) == 3


BAD_ROWS = [
    ({"completion_id": str(uuid.uuid4())}, "completion_id"),
    ({"line": 3}, "line"),  # the text has 3 lines: 0, 1, 2
    ({"line": -1}, "line"),
    ({"label": 0}, "label"),
    ({"label": "yes"}, "label"),
]
MALFORMED = [
    b"{not json",
    b"\xff\xfe{}",  # not UTF-8
    b'{"ratings": [], "x": NaN}',  # no NaN/Infinity in a database
    b'{"completions": [{"prompt": "\\ud800"}]}',  # an unpaired surrogate is no UTF-8
    b'{"ratings": "nope"}',
    b'{"ratings": [{"line": 1}]}',
    b"[]",
    b'{"ratings": [], "extra": 1}',
]


def test_a_batch_with_one_bad_row_stores_nothing(api: Api) -> None:
    c = post_completion(api)
    for bad_row, field in BAD_ROWS:
        rows = [rating(c["id"], line) for line in range(3)]
        rows.insert(2, rating(c["id"]) | bad_row)
        r = api.post("/v1/ratings", json={"ratings": rows})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][:4] == ["body", "ratings", 2, field]
    assert n_ratings(api) == 0


def test_malformed_json_or_wrong_types_are_422_naming_the_field(api: Api) -> None:
    for body in MALFORMED:
        path = "/v1/completions" if b"completions" in body else "/v1/ratings"
        r = api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, body
        assert r.json()["detail"][0]["loc"], body


def test_a_body_over_the_limit_is_413_and_stores_nothing(db_url: str, tmp_path: Path) -> None:
    with api_on(db_url, tmp_path, max_body_bytes=4096) as api:
        c = post_completion(api)
        rows = [rating(c["id"]) for _ in range(100)]
        r = api.post("/v1/ratings", json={"ratings": rows})
        assert r.status_code == 413

        def chunks():  # no Content-Length: counted as it streams
            yield b'{"ratings": ['
            yield b" " * 8000
            yield b"]}"

        r = api.post("/v1/ratings", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert n_ratings(api) == 0


def _raw(payload: dict, spell: dict[str, str]) -> bytes:  # type: ignore[type-arg]
    """``payload`` as JSON with placeholder strings replaced by raw JSON spellings."""
    body = json.dumps(payload)
    for placeholder, raw in spell.items():
        body = body.replace(f'"{placeholder}"', raw)
    return body.encode()


LOGPROB_2 = ["body", "completions", 1, "token_logprobs", 2]


def test_non_finite_numbers_nul_and_lone_surrogates_are_422_naming_the_field(api: Api) -> None:
    """Each used to be stored (SQLite: as Infinity, exported as null), or to answer 500: the
    422 handler could not encode 1e400, and PostgreSQL text cannot hold a NUL."""
    c = post_completion(api)
    row = completion()

    def ratings(spelling: str) -> bytes:
        return _raw({"ratings": [rating(c["id"]) | {"line": "X"}]}, {"X": spelling})

    def logprobs(*values: object) -> bytes:
        rows = [completion(), row | {"token_logprobs": [*values[:-1], "X"]}]
        return _raw({"completions": rows}, {"X": str(values[-1])})

    huge = "1" + "0" * 400 + ".5"  # no exponent, still beyond a float
    run = {"method": "m", "n_labels": 0, "n_items": 0, "annotators": [], "metrics": {"loss": "X"}}
    cases: list[tuple[str, str, bytes, list]] = [  # type: ignore[type-arg]
        ("alice", "/v1/ratings", ratings("1e400"), ["body", "ratings", 0, "line"]),
        ("alice", "/v1/ratings", ratings("-1E+999"), ["body", "ratings", 0, "line"]),
        ("alice", "/v1/completions", logprobs(-0.5, -0.1, "-1e400"), LOGPROB_2),
        ("alice", "/v1/completions", logprobs(-0.5, -0.1, "NaN"), LOGPROB_2),
        ("alice", "/v1/completions", logprobs(-0.5, -0.1, "-Infinity"), LOGPROB_2),
        ("trainer", "/v1/aggregation-runs", _raw(run, {"X": huge}), ["body", "metrics", "loss"]),
    ]
    for field in ("prompt", "suffix", "text", "model", "language", "adapter_version"):
        body = json.dumps({"completions": [completion(), completion(**{field: "a\x00b"})]})
        cases.append(("alice", "/v1/completions", body.encode(), ["body", "completions", 1, field]))
    nul_key = {
        "method": "m",
        "n_labels": 0,
        "n_items": 0,
        "annotators": [],
        "metrics": {"a\x00": 1},
    }
    nul_loc = ["body", "metrics", "a\x00"]
    cases.append(("trainer", "/v1/aggregation-runs", json.dumps(nul_key).encode(), nul_loc))
    lone = _raw({"completions": [completion(prompt="P")]}, {"P": '"x\\ud83d y"'})
    cases.append(("alice", "/v1/completions", lone, ["body", "completions", 0, "prompt"]))
    for who, path, body, loc in cases:
        r = api.post(path, who, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (body[:200], r.text)
        assert r.json()["detail"][0]["loc"] == loc, (body[:200], r.text)
    assert n_ratings(api) == 0
    assert [
        x["id"] for x in api.get("/v1/completions/export", "trainer").json()["completions"]
    ] == [c["id"]]
    assert api.get("/v1/aggregation-runs", "trainer").json() == []
    # The same spellings inside strings, a tiny exponent and a real emoji are fine.
    fine = completion(prompt="x = [1, NaN, -Infinity, 1e400] # \\u0000 😀", token_logprobs="L")
    body = _raw({"completions": [fine]}, {"L": "[-1e-400, -2E-5, -0.5]"})
    r = api.post("/v1/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_token_ids_are_bounded_in_range_and_match_their_logprobs(api: Api) -> None:
    bad: list[tuple[dict, list]] = [  # type: ignore[type-arg]
        ({"token_ids": [1, 10**30, 3]}, ["token_ids", 1]),
        ({"token_ids": [-5, 1, 2]}, ["token_ids", 0]),
        ({"prompt_token_ids": [7, TOKEN_ID_END]}, ["prompt_token_ids", 1]),
        ({"prompt_token_ids": [True]}, ["prompt_token_ids", 0]),
        ({"token_ids": [1] * (MAX_COMPLETION_TOKENS + 1), "token_logprobs": None}, ["token_ids"]),
        ({"prompt_token_ids": [1] * (MAX_PROMPT_TOKENS + 1)}, ["prompt_token_ids"]),
        ({"token_logprobs": [-0.5, -0.25]}, ["token_logprobs"]),  # 2 for 3 ids
        ({"token_ids": None}, ["token_logprobs"]),  # log-probs of no tokens
    ]
    for change, loc in bad:
        r = api.post("/v1/completions", json={"completions": [completion(), completion(**change)]})
        assert r.status_code == 422, (change, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "completions", 1, *loc], r.text
    assert api.get("/v1/completions/export", "trainer").json()["completions"] == []
    edge = completion(
        token_ids=[0, TOKEN_ID_END - 1],
        token_logprobs=[-1.0, -2.0],
        prompt_token_ids=[TOKEN_ID_END - 1] * MAX_PROMPT_TOKENS,
    )
    assert api.post("/v1/completions", json={"completions": [edge]}).status_code == 200
    no_logprobs = completion(token_logprobs=None)
    assert api.post("/v1/completions", json={"completions": [no_logprobs]}).status_code == 200


def test_sqlite_syncs_every_commit_so_an_answered_batch_is_on_disk(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL syncs at checkpoints only: a power loss could take a
    batch the store had already answered 200 for."""
    from crlhf_store.db import Database

    db = Database(f"sqlite:///{tmp_path / 'store.db'}", pool_size=1, max_overflow=0)
    try:
        with db.reading() as s:
            assert s.scalar(text("PRAGMA journal_mode")) == "wal"
            assert s.scalar(text("PRAGMA synchronous")) == 2  # FULL
    finally:
        db.dispose()


# --- review queue and honeypots -------------------------------------------------------------


def honeypots(api: Api, n: int) -> list[uuid.UUID]:
    items = [
        HoneypotIn(prompt="# add\n", text=f"x = {i}\ny = x + {i}\n", truth=[1, -1])
        for i in range(n)
    ]
    with api.app.state.store.db.writing() as s:
        import_honeypots(s, honeypots=items)
        rows = s.execute(text("SELECT completion_id FROM honeypots")).scalars().all()
    return [uuid.UUID(str(r)) for r in rows]


def test_a_honeypot_with_a_nul_is_refused_naming_its_line_and_field() -> None:
    lines = ['{"text": "x = 1\\n", "truth": [1]}', '{"text": "y\\u0000\\n", "truth": [1]}']
    with pytest.raises(Invalid) as caught:
        parse_jsonl(lines)
    assert caught.value.loc == ("line", 2, "text")


def test_review_queue_serves_others_completions_until_redundancy(api: Api) -> None:
    assert api.get("/v1/review/next").status_code == 204
    c = post_completion(api, "alice")
    assert api.get("/v1/review/next", "alice").status_code == 204  # never one's own
    task = api.get("/v1/review/next", "bob").json()
    assert task["completion_id"] == c["id"] and set(task) == set(ReviewTask.model_fields)
    assert api.get("/v1/review/next", "bob").status_code == 204  # never twice
    assert api.get("/v1/review/next", "carol").json()["completion_id"] == c["id"]
    assert api.get("/v1/review/next", "trainer").json()["completion_id"] == c["id"]
    assert api.get("/v1/review/next", "admin").status_code == 204  # redundancy 3 reached
    r = api.post("/v1/ratings", "bob", json={"ratings": [rating(c["id"], 1, -1)]})
    assert r.json()["stored"] == 1


def test_honeypots_look_like_tasks_and_their_truth_reaches_only_the_export(
    db_url: str, tmp_path: Path
) -> None:
    with api_on(db_url, tmp_path, honeypot_rate_new=1.0) as api:
        ids = honeypots(api, 3)
        post_completion(api, "bob")
        seen = []
        for _ in range(5):
            r = api.get("/v1/review/next", "alice")
            if r.status_code == 204:
                break
            assert set(r.json()) == set(ReviewTask.model_fields)
            assert "truth" not in r.text
            seen.append(uuid.UUID(r.json()["completion_id"]))
        assert set(ids) <= set(seen) and len(seen) == 4  # honeypots first, then bob's
        for cid in ids:
            api.post("/v1/ratings", json={"ratings": [rating(str(cid), 0), rating(str(cid), 1)]})
        for path in ("/v1/me", "/v1/adapters"):
            assert "truth" not in api.get(path).text
        page = api.get("/v1/labels/export", "trainer").json()
        assert page["honeypots"] == {str(cid): [1, -1] for cid in ids}
        exported = api.get("/v1/completions/export", "trainer").json()["completions"]
        assert not {c["id"] for c in exported} & {str(i) for i in ids}


# --- exports --------------------------------------------------------------------------------


def test_label_export_pages_neither_skip_nor_repeat_and_keep_history(api: Api) -> None:
    c = post_completion(api, "bob")
    assert api.get("/v1/review/next").json()["completion_id"] == c["id"]  # served to alice
    api.post("/v1/ratings", json={"ratings": [rating(c["id"], 0, 1) for _ in range(5)]})
    api.post("/v1/ratings", json={"ratings": [rating(c["id"], 0, -1)]})  # newest counts
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = api.get("/v1/labels/export", "trainer", params=params).json()
        if not page["labels"]:
            assert page["next"] is None
            break
        seen += page["labels"]
        after = page["next"]
    assert [x["rating_id"] for x in seen] == sorted({x["rating_id"] for x in seen})
    assert len(seen) == 6 and seen[-1]["label"] == -1 and seen[0]["annotator"] == "alice"
    assert [x["superseded"] for x in seen] == [True] * 5 + [False]  # the store says so
    api.post("/v1/ratings", json={"ratings": [rating(c["id"], 2, 1)]})
    more = api.get("/v1/labels/export", "admin", params={"after": after}).json()
    assert [x["line"] for x in more["labels"]] == [2]


def test_export_cursor_must_be_a_cursor(api: Api) -> None:
    r = api.get("/v1/labels/export", "trainer", params={"after": "abc"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "after"]


def test_completion_export_carries_what_the_trainer_needs(api: Api) -> None:
    c = post_completion(api, "bob", adapter_version="v7")
    page = api.get("/v1/completions/export", "trainer").json()
    (out,) = page["completions"]
    assert out["annotator"] == "bob" and out["adapter_version"] == "v7"
    assert out["token_ids"] == c["token_ids"] and out["token_logprobs"] == c["token_logprobs"]
    assert api.get("/v1/completions/export", "trainer", params={"after": page["next"]}).json() == {
        "completions": [],
        "next": None,
    }


def test_aggregation_runs_are_stored_as_rows(api: Api) -> None:
    c = post_completion(api, "bob")
    run = {
        "method": "paper",
        "n_labels": 3,
        "n_items": 3,
        "annotators": [
            {
                "annotator": "alice",
                "reliability": 0.9,
                "low": 0.8,
                "high": 0.95,
                "spammer_score": 0.1,
                "flag": "ok",
                "n_labels": 3,
            }
        ],
        "rewards": [{"completion_id": c["id"], "reward": 0.66, "low": 0.5, "high": 0.8}],
        "metrics": {"iterations": 12},
    }
    r = api.post("/v1/aggregation-runs", "trainer", json=run)
    assert r.status_code == 200 and r.json()["method"] == "paper"
    with api.app.state.store.db.reading() as s:
        assert s.execute(
            text("SELECT annotator, reliability FROM annotator_reliabilities")
        ).all() == [("alice", 0.9)]
        assert s.scalar(text("SELECT reward FROM completion_rewards")) == 0.66
    assert [x["id"] for x in api.get("/v1/aggregation-runs", "trainer").json()] == [r.json()["id"]]
    run["rewards"][0]["completion_id"] = str(uuid.uuid4())
    r = api.post("/v1/aggregation-runs", "trainer", json=run)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
        "body",
        "rewards",
        0,
        "completion_id",
    ]


# --- adapters -------------------------------------------------------------------------------


FILES = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"\x00" * 4096}


def upload(api: Api, version: str, files=FILES, sha256=None, **form):  # type: ignore[no-untyped-def]
    digest = sha256 or manifest_digest({n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    data = {
        "version": version,
        "base_model": "tiny",
        "sha256": digest,
        "metrics": '{"pass@1": 0.5}',
    } | form
    parts = [("files", (name, blob)) for name, blob in files.items()]
    return api.post("/v1/adapters", "trainer", data=data, files=parts)


def test_adapter_registry_lifecycle(api: Api) -> None:
    assert api.get("/v1/adapters/latest").status_code == 404
    r = upload(api, "v1")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "candidate" and r.json()["metrics"] == {"pass@1": 0.5}
    assert api.get("/v1/adapters/latest").status_code == 404  # candidates are not served
    assert upload(api, "v1").status_code == 409
    assert api.post("/v1/adapters/v1/publish", "trainer").json()["status"] == "published"
    assert upload(api, "v2", parent="v1").status_code == 200
    assert api.get("/v1/adapters/latest").json()["version"] == "v1"
    api.post("/v1/adapters/v2/publish", "admin")
    assert api.get("/v1/adapters/latest").json()["version"] == "v2"
    assert api.post("/v1/adapters/v2/retire", "trainer").json()["status"] == "retired"
    assert api.get("/v1/adapters/latest").json()["version"] == "v1"
    assert [a["version"] for a in api.get("/v1/adapters").json()] == ["v1", "v2"]
    assert api.post("/v1/adapters/nope/publish", "trainer").status_code == 404

    r = api.get("/v1/adapters/v1/download")
    assert r.headers["X-Checksum-Sha256"] == hashlib.sha256(r.content).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        assert {m.name: tar.extractfile(m).read() for m in tar.getmembers()} == FILES  # type: ignore[union-attr]


def test_a_wrong_adapter_checksum_is_refused_and_leaves_nothing(api: Api, tmp_path: Path) -> None:
    r = upload(api, "v1", sha256="0" * 64)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "sha256"]
    assert api.get("/v1/adapters").json() == []
    assert list((tmp_path / "adapters").iterdir()) == []
    assert upload(api, "../x").status_code == 422
    assert upload(api, "v1", files={"../evil": b"x"}).status_code == 422
    assert upload(api, "v1", metrics="[1]").status_code == 422
    assert api.get("/v1/adapters").json() == []


def test_gguf_artifact_round_trip(api: Api) -> None:
    blob = b"GGUF" + b"\x01" * 100
    digest = manifest_digest({n: hashlib.sha256(b).hexdigest() for n, b in FILES.items()})
    data = {
        "version": "g1",
        "base_model": "tiny",
        "sha256": digest,
        "gguf_sha256": hashlib.sha256(blob).hexdigest(),
    }
    parts = [("files", (n, b)) for n, b in FILES.items()] + [("gguf", ("lora.gguf", blob))]
    out = api.post("/v1/adapters", "trainer", data=data, files=parts).json()
    assert {a["kind"] for a in out["artifacts"]} == {"peft", "gguf"}
    r = api.get("/v1/adapters/g1/download", params={"artifact": "gguf"})
    assert r.content == blob and r.headers["X-Checksum-Sha256"] == data["gguf_sha256"]
    data |= {"version": "g2", "gguf_sha256": "0" * 64}
    assert api.post("/v1/adapters", "trainer", data=data, files=parts).status_code == 422
    assert api.get("/v1/adapters/g2/download").status_code == 404
    assert api.get("/v1/adapters/v1/download", params={"artifact": "gguf"}).status_code == 404


PICKLE = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."  # pickle.dumps(1)


def test_pickle_weights_are_refused_and_leave_nothing(api: Api, tmp_path: Path) -> None:
    """torch.load (PEFT's fallback for a .bin) runs a pickle's code on every machine that
    loads the adapter: only safetensors weights and plain side files are taken."""
    for name in ("adapter_model.bin", "a.pt", "a.pth", "a.pkl", "a.ckpt", "a.pickle", "weights"):
        r = upload(api, "v1", files=FILES | {name: PICKLE})
        assert r.status_code == 422, name
        detail = r.json()["detail"][0]
        assert detail["loc"] == ["body", "files"] and "safetensors" in detail["msg"], name
    assert api.get("/v1/adapters").json() == []
    assert not any((tmp_path / "adapters").glob("*/*"))
    side_files = FILES | {"README.md": b"# v1", "tokenizer.json": b"{}"}
    assert upload(api, "v1", files=side_files).status_code == 200


def test_a_gguf_needs_its_digest_and_a_gguf_name(api: Api) -> None:
    blob = b"GGUF" + b"\x01" * 100
    digest = manifest_digest({n: hashlib.sha256(b).hexdigest() for n, b in FILES.items()})
    data = {"version": "g1", "base_model": "tiny", "sha256": digest}
    parts = [("files", (n, b)) for n, b in FILES.items()]
    r = api.post("/v1/adapters", "trainer", data=data, files=[*parts, ("gguf", ("l.gguf", blob))])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "gguf_sha256"]
    data["gguf_sha256"] = hashlib.sha256(blob).hexdigest()
    r = api.post("/v1/adapters", "trainer", data=data, files=[*parts, ("gguf", ("l.bin", blob))])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "gguf"]
    assert api.get("/v1/adapters").json() == []
    r = api.post("/v1/adapters", "trainer", data=data, files=[*parts, ("gguf", ("l.gguf", blob))])
    assert r.status_code == 200, r.text


def test_nul_in_an_adapter_form_or_path_is_refused_not_500(api: Api) -> None:
    r = upload(api, "v1", base_model="tiny\x00")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "base_model"]
    r = upload(api, "v1", metrics='{"a": "\\u0000"}')
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "metrics", "a"]
    r = upload(api, "v1", metrics='{"loss": -1e400}')
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "metrics", "loss"]
    for path in ("/v1/adapters/v%001/publish", "/v1/adapters/v%001/retire"):
        assert api.post(path, "trainer").status_code == 404, path
    assert api.get("/v1/adapters/v%001/download").status_code == 404
