"""Where suggestions come from, end to end (a real server over stdio, the tiny model): a
position seen before and typing through a kept suggestion cost no model call, a burst of
keystrokes costs one, an adapter swap empties the cache. Model calls are the server's own
count (``crlhf/completionStats``). With ``ringBuffer`` on, other files' code reaches the
prompt, an excluded file's never."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from lsp_harness import (
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
from tiny_model import make_tiny_adapter

URI = "file:///work/suggest.py"
SOURCE = "import os\n\n\ndef mean(values):\n    \n\n\ndef add(a, b):\n    \n"
A, B = (4, 4), (8, 4)


async def stats(client) -> dict:  # type: ignore[no-untyped-def]
    return await request(client, "crlhf/completionStats")


@pytest.mark.slow  # 10-20 s: make test runs it, make check does not
async def test_repeats_and_typing_through_cost_no_model_call_and_a_burst_costs_one(
    tmp_path: Path, tiny_model: Path
) -> None:
    async with lsp_session(settings_for(tmp_path, tiny_model)) as client:
        open_doc(client, URI, SOURCE)
        [at_a] = await inline(client, URI, *A)
        [at_b] = await inline(client, URI, *B)
        before = await stats(client)
        assert before["modelCalls"] == 2
        assert before["cached"] >= 2  # and what may follow an accept, made ahead

        # Back to A (B's suggestion is the one on screen): answered from the cache.
        [again] = await inline(client, URI, *A)
        assert again.insert_text == at_a.insert_text
        assert again.command.arguments == at_a.command.arguments  # the same completion
        after = await stats(client)
        assert after["modelCalls"] == 2
        assert after["cacheHits"] == before["cacheHits"] + 1

        # At B, the user types the start of B's suggestion (A's is on screen now).
        typed = at_b.insert_text[:2]
        assert "\n" not in typed
        edit(client, URI, 2, B, B, typed)
        [rest] = await inline(client, URI, B[0], B[1] + 2)
        assert rest.insert_text == at_b.insert_text[2:]
        assert rest.command.arguments == at_b.command.arguments
        assert (await stats(client))["modelCalls"] == 2

        # A burst of keystrokes on a new line, one request each: one model call.
        line, col, version = 5, 0, 3
        edit(client, URI, version, (line, 0), (line, 0), "    ")
        col = 4
        burst = []
        for char in "total":
            version += 1
            edit(client, URI, version, (line, col), (line, col), char)
            col += 1
            burst.append(asyncio.ensure_future(inline(client, URI, line, col)))
        answers = await asyncio.gather(*burst)
        assert answers[:-1] == [[]] * 4  # superseded by the next keystroke
        burst_stats = await stats(client)
        assert burst_stats["modelCalls"] == 3
        assert burst_stats["superseded"] == 4
        assert burst_stats["requests"] == 9


@pytest.mark.slow
async def test_an_adapter_swap_empties_the_cache(
    tmp_path: Path, tiny_model: Path, live_store
) -> None:
    settings = settings_for(
        tmp_path, tiny_model, storeUrl=live_store.url, token=live_store.annotator_token
    )
    async with lsp_session(settings) as client:
        open_doc(client, URI, SOURCE)
        await inline(client, URI, *A)
        await inline(client, URI, *B)
        await inline(client, URI, *A)  # a hit: the cache would answer
        assert (await stats(client))["modelCalls"] == 2

        folder = make_tiny_adapter(tiny_model, tmp_path / "v1", seed=1)
        with live_store.client(live_store.trainer_token) as store:
            store.upload_adapter(folder, version="v1", base_model=str(tiny_model))
            store.publish_adapter("v1")
        assert (await command(client, "crlhf.checkAdapter"))["swapped"]
        assert (await stats(client))["cached"] == 0

        await inline(client, URI, *B)  # kept before the swap: asked of the new adapter
        assert (await stats(client))["modelCalls"] == 3


def _prompt_of(outbox: Path, completion_id: str) -> str:
    with sqlite3.connect(outbox) as db:
        [(payload,)] = db.execute(
            "SELECT payload FROM outbox WHERE kind = 'completion' AND key = ?", (completion_id,)
        ).fetchall()
    return json.loads(payload)["prompt"]


@pytest.mark.slow
async def test_the_ring_buffer_puts_other_files_code_in_the_prompt_when_on(
    tmp_path: Path, tiny_model: Path
) -> None:
    helpers = "".join(f"def frobnicate_{i}(x):\n    return x * {i}\n\n" for i in range(6))
    settings = settings_for(tmp_path, tiny_model, ringBuffer=True)
    async with lsp_session(settings) as client:
        open_doc(client, "file:///work/helpers.py", helpers)
        open_doc(client, "file:///work/.env", "API_KEY=hunter2\n" * 8, language="dotenv")
        open_doc(client, URI, SOURCE)
        [item] = await inline(client, URI, *A)
        cid = item.command.arguments[0]
        await command(client, "crlhf.accepted", cid)
        prompt = _prompt_of(tmp_path / "outbox.sqlite3", cid)
        assert prompt.startswith("# helpers.py\ndef frobnicate_0(x):")
        assert "# suggest.py\nimport os\n" in prompt
        assert "hunter2" not in prompt  # an excluded file never gives code

        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crlhf": {"ringBuffer": False}})
        )
        [item] = await inline(client, URI, *B)
        cid = item.command.arguments[0]
        await command(client, "crlhf.accepted", cid)
        assert _prompt_of(tmp_path / "outbox.sqlite3", cid).startswith("import os\n")


@pytest.mark.slow
async def test_the_suggestion_after_an_accept_is_made_ahead(
    tmp_path: Path, tiny_model: Path
) -> None:
    # Where the tiny model's next suggestion after an accept is not empty (found by trying
    # the snippets it was trained on): "(a, b" then "):\n    return a + b".
    source = "def factorial(n):\n    if n == 0:\n  "
    async with lsp_session(settings_for(tmp_path, tiny_model)) as client:
        open_doc(client, URI, source)
        [item] = await inline(client, URI, 2, 2)
        ahead = await wait_until(lambda: _when(client, cached=2))
        assert ahead["modelCalls"] == 1 and ahead["speculative"] == 1

        # The user accepts: the editor inserts the text and asks again at its end.
        text = item.insert_text
        end = (2 + text.count("\n"), len(("  " + text).rsplit("\n", 1)[-1]))
        edit(client, URI, 2, (2, 2), (2, 2), text)
        await command(client, "crlhf.accepted", item.command.arguments[0])
        [after] = await inline(client, URI, *end)
        assert after.command.arguments != item.command.arguments
        now = await stats(client)
        assert now["modelCalls"] == 1
        assert now["cacheHits"] == 1


async def _when(client, **expected):  # type: ignore[no-untyped-def]
    now = await stats(client)
    return now if all(now[k] == v for k, v in expected.items()) else None


@pytest.mark.slow
async def test_a_long_unread_prompt_is_answered_short_then_read_whole_at_a_pause(
    tmp_path: Path, tiny_model: Path
) -> None:
    """A new position in a long file: the nearest tokens answer at once, the whole prompt
    is read into the KV cache at the next pause, and the next request uses it whole."""
    helpers = "".join(
        f"def helper_{i}(values):\n    total = sum(values)\n    return total / len(values)\n\n"
        for i in range(120)
    )
    source = helpers + "\ndef mean(values):\n    "
    end = source.count("\n")
    outbox = tmp_path / "outbox.sqlite3"
    async with lsp_session(settings_for(tmp_path, tiny_model)) as client:
        open_doc(client, URI, source)
        [short] = await inline(client, URI, end, 4)
        await command(client, "crlhf.accepted", short.command.arguments[0])
        short_prompt = _prompt_of(outbox, short.command.arguments[0])
        await wait_until(lambda: _when(client, widened=1))

        edit(client, URI, 2, (end, 4), (end, 4), "t")
        [whole] = await inline(client, URI, end, 5)
        await command(client, "crlhf.accepted", whole.command.arguments[0])
        whole_prompt = _prompt_of(outbox, whole.command.arguments[0])
        assert whole_prompt.endswith("def mean(values):\n    t")
        assert short_prompt.endswith("def mean(values):\n    ")
        assert len(whole_prompt) > 3 * len(short_prompt)
