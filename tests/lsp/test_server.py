"""crlhf-lsp end to end: a real server process over stdio, the tiny model, a real store.

Starting a server (imports + the model) is the slow part on a shared CPU, so each test
drives one server through several steps. Two checks run in process: the module's public
names, and the heap frozen once a model is loaded.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import crlhf_lsp.server
import pytest
from crlhf_lsp.settings import Settings
from lsp_harness import (
    code_actions,
    command,
    edit,
    inline,
    lsp_session,
    open_doc,
    request,
    settings_for,
    wait_until,
)
from lsprotocol import types

URI = "file:///work/demo.py"
SOURCE = "import os\n\n\ndef mean(values):\n    "


@pytest.mark.slow  # 10-20 s: make test runs it, make check does not
async def test_completion_typed_through_cancellation_and_bad_input(
    tmp_path: Path, tiny_model: Path
) -> None:
    slow = {"CRLHF_TOKEN_DELAY_S": "0.1"}
    async with lsp_session(settings_for(tmp_path, tiny_model), env=slow) as client:
        caps = client.init_result.capabilities
        assert caps.inline_completion_provider is not None
        assert caps.code_action_provider is not None
        commands = set(caps.execute_command_provider.commands)
        assert {"crlhf.rate", "crlhf.accepted", "crlhf.nextReviewTask"} <= commands

        open_doc(client, URI, SOURCE)
        [item] = await inline(client, URI, 4, 4)
        assert len(item.insert_text.strip()) > 1
        assert item.command.command == "crlhf.accepted"
        completion_id = item.command.arguments[0]
        uuid.UUID(completion_id)

        # The user types the first two characters of the suggestion: answered from it.
        typed = item.insert_text[:2]
        edit(client, URI, 2, (4, 4), (4, 4), typed)
        [again] = await inline(client, URI, 4, 4 + len(typed))
        assert again.insert_text == item.insert_text[2:]
        assert list(again.command.arguments) == [completion_id]

        # $/cancelRequest: the reply is a cancellation, and the server carries on.
        # (CRLHF_TOKEN_DELAY_S slows each token so that there is a generation to cancel.)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crlhf": {"maxTokens": 64}})
        )
        other = "file:///work/cancel.py"
        open_doc(client, other, SOURCE)
        msg_id = str(uuid.uuid4())
        future = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, _params(other, 4, 4), msg_id=msg_id
        )
        await asyncio.sleep(0.3)
        client.cancel_request(types.CancelParams(id=msg_id))
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(asyncio.wrap_future(future), 60)

        # A newer request for the same document stops the older one at its next token.
        older = asyncio.ensure_future(inline(client, other, 4, 4))
        await asyncio.sleep(0.15)
        edit(client, other, 2, (0, 0), (0, 0), "#\n")
        newer = await inline(client, other, 5, 4)
        assert await asyncio.wait_for(older, 60) == []
        assert newer and newer[0].insert_text.strip()

        # Bad input: empty answers or LSP errors, never a crash.
        assert await inline(client, "file:///not/open.py", 0, 0) == []
        open_doc(client, "file:///emoji.py", "x = '🙂'\n")
        assert await inline(client, "file:///emoji.py", 50, 0) == []  # past the end
        await inline(client, "file:///emoji.py", 0, 6)  # inside a surrogate pair: clamped
        await inline(client, "file:///emoji.py", 0, 10_000)
        open_doc(client, "file:///huge.py", "x = 1\n" * 100_000)
        await inline(client, "file:///huge.py", 100_000, 0)
        with pytest.raises(Exception, match="crlhf.rate"):
            await command(client, "crlhf.rate", "not-a-uuid", 0)
        with pytest.raises(Exception, match="vote"):
            await command(client, "crlhf.rate", completion_id, 0, 7)

        # The enabled toggle and the status request.
        assert (await command(client, "crlhf.toggleEnabled"))["enabled"] is False
        assert await inline(client, URI, 5, 4) == []
        status = await request(client, "crlhf/status")
        assert status.pop("lastLatencyMs") > 0  # the last suggestion's, in ms
        tally = {k: status.pop(k) for k in ("suggested", "accepted", "partlyAccepted", "dismissed")}
        assert tally["suggested"] >= 2 and tally["accepted"] == 0, tally  # none accepted here
        # Suggestions passed over wait in the outbox for a store: each its row and its event.
        left = tally["dismissed"] + tally["partlyAccepted"]
        assert status.pop("outboxPending") == 2 * left, tally
        assert status == {
            "model": str(tiny_model),
            "modelLoading": False,
            "adapterVersion": None,
            "adapterPublished": None,
            "outboxSetAside": 0,
            "storeReachable": None,
            "storeProblem": None,
            "tokenRefused": False,
            "enabled": False,
            "generating": False,
        }


@pytest.mark.slow  # 10-20 s: make test runs it, make check does not
async def test_ratings_reach_the_store_across_an_outage_and_a_restart(
    tmp_path: Path, tiny_model: Path, live_store
) -> None:
    settings = settings_for(
        tmp_path, tiny_model, storeUrl=live_store.url, token=live_store.annotator_token
    )
    async with lsp_session(settings) as client:
        open_doc(client, URI, SOURCE)
        [item] = await inline(client, URI, 4, 4)
        text, completion_id = item.insert_text, item.command.arguments[0]
        lines = (SOURCE + text).split("\n")
        # The client inserts the suggestion, then runs the item's command.
        edit(client, URI, 2, (4, 4), (4, 4), text)
        await command(client, "crlhf.accepted", completion_id)
        # Two lines typed above the function: the completion's lines move down by two.
        edit(client, URI, 3, (1, 0), (1, 0), "import sys\nimport re\n")
        assert await code_actions(client, URI, 0, 5) == []
        actions = await code_actions(client, URI, 6, 6)
        assert [a[0] for a in actions] == ["👍 crlhf: line is correct", "👎 crlhf: line is wrong"]
        assert actions[0][1:] == ("crlhf.rate", [completion_id, 0, 1])
        assert actions[1][1:] == ("crlhf.rate", [completion_id, 0, -1])
        if len(lines) > 5:  # over a selection: every line of the completion in it
            both = await code_actions(client, URI, 6, 8)
            assert both[0][2][:6] == [completion_id, 0, 1, completion_id, 1, 1]
            # A line rewritten beyond recognition is no longer offered.
            edit(client, URI, 4, (7, 0), (7, len(lines[5])), "zzzzzzzzzzzzzzzzzzzzzzzzz")
            assert await code_actions(client, URI, 7, 7) == []
        assert (await command(client, "crlhf.rate", *actions[1][2]))["rated"] == 1
        hints = await client.text_document_inlay_hint_async(
            types.InlayHintParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                range=types.Range(
                    start=types.Position(line=0, character=0),
                    end=types.Position(line=50, character=0),
                ),
            )
        )
        assert [(h.position.line, h.label) for h in hints] == [(6, "👎 rated")]
        labels = await wait_until(lambda: asyncio.to_thread(_labels, live_store), timeout=60)
        assert labels == [(completion_id, 0, -1)]
        assert (await request(client, "crlhf/status"))["storeReachable"] is True

        # The store goes away: the next rating waits in the outbox ...
        live_store.stop()
        assert (await command(client, "crlhf.rate", completion_id, 0, 1))["rated"] == 1
        status = await wait_until(lambda: _status_when(client, storeReachable=False), timeout=60)
        assert status["outboxPending"] >= 1
    # ... crlhf-lsp exits with it pending, the store comes back, a new crlhf-lsp sends it.
    live_store.start()
    async with lsp_session(settings) as client:
        await wait_until(lambda: len(_labels(live_store)) == 2, timeout=90)
        await wait_until(lambda: _status_when(client, outboxPending=0), timeout=30)
        assert sorted(_labels(live_store)) == sorted(
            [(completion_id, 0, -1), (completion_id, 0, 1)]
        )
        # The review queue through crlhf-lsp: a task (or null when the queue is empty).
        task = await command(client, "crlhf.nextReviewTask")
        assert task is None or {"task_id", "completion_id", "text"} <= set(task)


def _params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )


async def _status_when(client, **expected):  # type: ignore[no-untyped-def]
    status = await request(client, "crlhf/status")
    return status if all(status[k] == v for k, v in expected.items()) else None


def _labels(live_store) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    with live_store.client(live_store.trainer_token) as store:
        return [(str(x.completion_id), x.line, x.label) for x in store.export_labels().labels]


def test_server_module_keeps_its_public_names() -> None:
    """The CLI and the features import these from crlhf_lsp.server; nothing else lives there."""
    assert sorted(crlhf_lsp.server.__all__) == ["CrlhfServer", "create_server"]


def test_the_heap_is_frozen_once_a_model_is_loaded(tmp_path: Path) -> None:
    """A full collection walked the whole loaded model (~200 ms with the tiny one): the
    server takes what is alive after loading out of the collector's sight."""
    import gc

    from crlhf_lsp.server import CrlhfServer

    server = CrlhfServer()
    gc.unfreeze()
    try:
        server._load_backend(Settings(backend="openai", openaiUrl="http://127.0.0.1:9"))
        assert server.backend_future is not None
        server.backend_future.result(timeout=60)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        server.shutdown_all()
