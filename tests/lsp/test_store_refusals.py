"""A real crlhf-lsp against a real store that refuses it: nothing is lost.

The model is not needed here (the ``openai`` backend, pointed nowhere, loads nothing): the
completions are posted to the store directly and rated through crlhf-lsp, so every
rating crosses the outbox.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from crlhf_contract.schemas import CompletionIn
from lsp_harness import command, lsp_session, request, wait_until
from lsprotocol import types


def _settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "openai",
        "openaiUrl": "http://127.0.0.1:9",
        "outboxPath": str(tmp_path / "lsp" / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
    } | extra


def _completions(live_store, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    rows = [
        CompletionIn(id=uuid.uuid4(), prompt="def f():\n", text="return 1\n", model="m")
        for _ in range(n)
    ]
    with live_store.client() as store:
        store.post_completions(rows)
    return [str(c.id) for c in rows]


def _labels(live_store) -> Counter[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    with live_store.client(live_store.trainer_token) as store:
        return Counter(
            (str(x.completion_id), x.line, x.label)
            for page in store.iter_label_pages()
            for x in page.labels
        )


async def _status_when(client, **expected):  # type: ignore[no-untyped-def]
    status = await request(client, "crlhf/status")
    return status if all(status[k] == v for k, v in expected.items()) else None


async def _unreachable_with(client, pending: int):  # type: ignore[no-untyped-def]
    """The status once the new token's first try met the stopped store (down: no longer
    "token refused")."""
    status = await _status_when(
        client, storeReachable=False, outboxPending=pending, tokenRefused=False
    )
    return status if status and status["storeProblem"].startswith("store unreachable") else None


async def test_a_refused_token_loses_nothing_and_set_aside_rows_can_be_requeued(
    tmp_path: Path, live_store
) -> None:
    ids = _completions(live_store, 32)
    unknown = str(uuid.uuid4())  # a completion the store does not have (yet)
    settings = _settings(tmp_path, storeUrl=live_store.url, token="mistyped-token")
    async with lsp_session(settings) as client:
        for cid in ids:
            assert (await command(client, "crlhf.rate", cid, 0, 1))["rated"] == 1
        assert (await command(client, "crlhf.rate", unknown, 0, -1))["rated"] == 1
        status = await wait_until(lambda: _status_when(client, storeReachable=False), timeout=60)
        assert status["storeProblem"].startswith("token refused")
        assert status["tokenRefused"] is True  # the status bar says "token refused", not offline
        assert (status["outboxPending"], status["outboxSetAside"]) == (33, 0)
        await wait_until(lambda: any("token refused" in m.message for m in client.messages))
        assert sum(_labels(live_store).values()) == 0

        # The user fixes the token: everything goes at once, the unknown completion's
        # rating is set aside (the store's 422 names it), the rest arrive exactly once.
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"crlhf": {"token": live_store.annotator_token}}
            )
        )
        status = await wait_until(
            lambda: _status_when(client, outboxPending=0, outboxSetAside=1, storeReachable=True),
            timeout=30,
        )
        assert status["storeProblem"] is None and status["tokenRefused"] is False
        assert _labels(live_store) == Counter((cid, 0, 1) for cid in ids)
        [aside] = await command(client, "crlhf.setAside")
        assert aside["kind"] == "rating" and aside["reason"].startswith("422")

        # Once the store has the completion, the set-aside rating is requeued and arrives.
        with live_store.client() as store:
            store.post_completions(
                [CompletionIn(id=unknown, prompt="def f():\n", text="return 1\n", model="m")]
            )
        assert await command(client, "crlhf.requeue") == {"requeued": 1}
        await wait_until(lambda: _labels(live_store)[(unknown, 0, -1)] == 1, timeout=30)
        await wait_until(lambda: _status_when(client, outboxPending=0, outboxSetAside=0))
        assert sum(_labels(live_store).values()) == 33


async def test_a_store_down_then_refusing_then_back_keeps_every_rating(
    tmp_path: Path, live_store
) -> None:
    """401, then the store gone (connection refused), then back with the token fixed."""
    ids = _completions(live_store, 8)
    settings = _settings(tmp_path, storeUrl=live_store.url, token="revoked")
    async with lsp_session(settings) as client:
        for cid in ids[:4]:
            await command(client, "crlhf.rate", cid, 0, -1)
        await wait_until(lambda: _status_when(client, storeReachable=False))
        live_store.stop()
        for cid in ids[4:]:
            await command(client, "crlhf.rate", cid, 0, -1)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"token": live_store.annotator_token})
        )
        await wait_until(lambda: _unreachable_with(client, 8))
        await asyncio.to_thread(live_store.start)
        await wait_until(lambda: _status_when(client, outboxPending=0), timeout=90)
        assert _labels(live_store) == Counter((cid, 0, -1) for cid in ids)


async def test_a_damaged_outbox_does_not_stop_the_server(tmp_path: Path) -> None:
    path = tmp_path / "lsp" / "outbox.sqlite3"
    path.parent.mkdir()
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)  # a header, then garbage
    async with lsp_session(_settings(tmp_path, storeUrl="")) as client:
        status = await request(client, "crlhf/status")
        assert status["outboxPending"] == 0 and status["enabled"] is True
        await wait_until(lambda: any("moved to" in m.message for m in client.messages))
        cid = str(uuid.uuid4())
        assert (await command(client, "crlhf.rate", cid, 0, 1))["rated"] == 1
        assert (await request(client, "crlhf/status"))["outboxPending"] == 1
    assert [p for p in path.parent.iterdir() if ".corrupt-" in p.name]
