"""The token is checked before the body is read (crlhf_store.authgate), on both backends.

Each request is sent straight to the ASGI app with a ``receive()`` that counts its calls:
a request without a live token must get its 401 with the body never asked for. Before
the gate, FastAPI read and parsed the whole body (up to 16 MiB of JSON, or a 2 GiB
multipart upload spooled to disk) and only then ran the dependency that checks the token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from crlhf_store.authgate import BearerGate, gated
from crlhf_store.db import Database
from store_helpers import Api, api_on

JSON_LIMIT = 4096
UPLOAD_LIMIT = 1 << 20


@pytest.fixture
def api(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with api_on(db_url, tmp_path, max_body_bytes=JSON_LIMIT, max_upload_bytes=UPLOAD_LIMIT) as api:
        yield api


def send_raw(
    app: Any,
    method: str,
    path: str,
    *,
    token: str | None = None,
    size: int = 0,
    chunked: bool = False,
    content_type: bytes = b"application/json",
) -> tuple[int, int]:
    """(status, how many times the app called receive()) for a body of ``size`` bytes."""
    headers = [(b"host", b"store"), (b"content-type", content_type)]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    headers.append((b"transfer-encoding", b"chunked") if chunked else
                   (b"content-length", str(size).encode()))  # fmt: skip
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("store", 80),
    }
    chunk = 1024
    reads = 0
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        left = max(0, size - (reads - 1) * chunk)
        return {"type": "http.request", "body": b" " * min(chunk, left), "more_body": left > chunk}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    asyncio.run(app(scope, receive, send))
    return statuses[0], reads


def test_no_live_token_is_refused_before_the_body_is_read(api: Api) -> None:
    app = api.app
    for token in (None, "crlhf_not-a-token"):
        # A body the size limit lets through: before, it was read and parsed, then 401.
        assert send_raw(app, "POST", "/v1/ratings", token=token, size=3000) == (401, 0)
        assert send_raw(app, "POST", "/v1/completions", token=token, chunked=True, size=9000) == (
            401,
            0,
        )
        multipart = b"multipart/form-data; boundary=x"
        assert send_raw(
            app, "POST", "/v1/adapters", token=token, size=UPLOAD_LIMIT // 2, content_type=multipart
        ) == (401, 0)
        assert send_raw(app, "GET", "/metrics", token=token) == (401, 0)
        assert send_raw(app, "GET", "/v1/stats/overview", token=token) == (401, 0)
    # With a live token the body is read as before (and refused for what it says).
    status, reads = send_raw(app, "POST", "/v1/ratings", token=api.tokens["alice"], size=3000)
    assert status == 422 and reads >= 1
    # Unprotected paths are left alone.
    assert send_raw(app, "GET", "/healthz") == (200, 0)
    assert send_raw(app, "GET", "/dashboard") == (303, 0)  # to the login form, as before


def test_only_a_trainer_token_may_send_an_upload_sized_body(api: Api) -> None:
    multipart = b"multipart/form-data; boundary=x"
    big = JSON_LIMIT * 4  # over the JSON limit, under the upload limit
    for who in ("alice", "bob"):  # annotators get the JSON limit, refused unread
        status, reads = send_raw(
            api.app, "POST", "/v1/adapters", token=api.tokens[who], size=big, content_type=multipart
        )
        assert (status, reads) == (413, 0), who
    for who in ("trainer", "admin"):  # let through: read, then refused as a malformed form
        status, reads = send_raw(
            api.app, "POST", "/v1/adapters", token=api.tokens[who], size=big, content_type=multipart
        )
        assert status not in (401, 403, 413) and reads >= 1, (who, status, reads)
    over = UPLOAD_LIMIT + 1
    status, reads = send_raw(
        api.app,
        "POST",
        "/v1/adapters",
        token=api.tokens["trainer"],
        size=over,
        content_type=multipart,
    )
    assert (status, reads) == (413, 0)


def test_every_gated_route_needs_a_token_and_no_other_does(api: Api) -> None:
    """The gate protects paths by prefix: every operation under them must declare the
    bearer token (so the prefix rule refuses no public route), and none outside them."""
    paths = api.app.openapi()["paths"]
    assert len(paths) > 15
    for path, operations in paths.items():
        for method, operation in operations.items():
            needs_token = any("HTTPBearer" in s for s in operation.get("security", []))
            assert needs_token == gated(path), (method, path)


def test_a_database_that_cannot_answer_is_503_not_500(tmp_path: Path) -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")

    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app behind the gate must not run")

    try:
        gate = BearerGate(never, db=db)
        assert send_raw(gate, "POST", "/v1/ratings", token="crlhf_x", size=10) == (503, 0)
    finally:
        db.dispose()
