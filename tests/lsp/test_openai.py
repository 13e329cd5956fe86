"""The ``openai`` backend against a fake OpenAI-compatible server on loopback (real HTTP).

vLLM returns the prompt's token ids with ``return_token_ids``; a server that does not is
asked ``POST /tokenize``. Either way a completion served past one machine carries what
the trainer needs (issue 13: before, every such completion was skipped, "no training
data").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from crlhf_lsp.backends.base import GenerationRequest
from crlhf_lsp.backends.openai import OpenAIBackend
from fake_openai import PROMPT_IDS, FakeOpenAI, serve_fake_openai
from lsp_harness import edit, inline, lsp_session, open_doc, wait_until
from lsprotocol import types

URI = "file:///work/demo.py"


@pytest.fixture
def fake_openai() -> Iterator[str]:
    with serve_fake_openai() as url:
        yield url


@pytest.mark.parametrize("inline", [True, False], ids=["vllm-return-token-ids", "tokenize"])
def test_completions_carry_prompt_and_completion_ids(fake_openai: str, inline: bool) -> None:
    FakeOpenAI.inline_prompt_ids = inline
    backend = OpenAIBackend(fake_openai, "base")
    try:
        out = backend.generate(GenerationRequest("def f():", max_tokens=4), threading.Event())
    finally:
        backend.close()
    assert out.text == "x = 1" and out.token_ids == [5, 7]
    assert out.token_logprobs == [-0.5, -1.0]
    assert out.prompt_token_ids == PROMPT_IDS
    paths = [p for p, _ in FakeOpenAI.seen]
    assert paths == (["/v1/completions"] if inline else ["/v1/completions", "/tokenize"])


def test_the_trainer_can_build_an_example_from_an_openai_completion(fake_openai: str) -> None:
    from crlhf_trainer.examples import build_examples
    from crlhf_trainer.rewards import Reward

    FakeOpenAI.inline_prompt_ids = True
    backend = OpenAIBackend(fake_openai, "base")
    out = backend.generate(GenerationRequest("def f():", max_tokens=4), threading.Event())
    backend.close()
    row = {
        "id": "c1",
        "prompt": "def f():",
        "text": out.text,
        "token_ids": out.token_ids,
        "token_logprobs": out.token_logprobs,
        "prompt_token_ids": out.prompt_token_ids,
    }
    pieces = {5: "x", 7: " = 1"}
    examples, skipped = build_examples(
        {"c1": row},
        {"c1": Reward("c1", 1.0, 1.0, 1.0, [1.0])},
        lambda ids: "".join(pieces[i] for i in ids),
    )
    assert skipped.no_token_ids == 0
    (ex,) = examples
    assert ex.prompt_ids == PROMPT_IDS and ex.completion_ids == [5, 7]


STORE_TOKEN = "store-token-of-the-annotator-0123456789"


async def test_the_openai_server_gets_its_own_key_never_the_store_token(
    fake_openai: str, tmp_path: Path
) -> None:
    """A real crlhf-lsp with both secrets set: ``openaiUrl`` sees ``openaiApiKey`` as its
    bearer, a changed key from then on, and the annotator's store token in no header.
    (Before, the store token was the bearer: any OpenAI-compatible server, or whoever a
    workspace pointed ``openaiUrl`` at, could write ratings in the annotator's name.)"""
    FakeOpenAI.inline_prompt_ids = True
    settings = {
        "backend": "openai",
        "openaiUrl": fake_openai,
        "openaiApiKey": "openai-key-1",
        "model": "base",
        "token": STORE_TOKEN,
        "storeUrl": "",
        "outboxPath": str(tmp_path / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
    }
    env = {"CRLHF_OPENAI_API_KEY": "", "CRLHF_TOKEN": ""}
    async with lsp_session(settings, env=env) as client:
        open_doc(client, URI, "def f():\n    ")
        assert await wait_until(lambda: inline(client, URI, 1, 4))
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=settings | {"openaiApiKey": "key-2"})
        )
        # The backend is rebuilt with the new key; each try types one more line, so the
        # completion is asked of the server rather than served from the cache.
        typed = [1]

        async def completed_with_new_key() -> bool:
            edit(client, URI, typed[0] + 1, (typed[0], 4), (typed[0], 4), "pass\n    ")
            typed[0] += 1
            await inline(client, URI, typed[0], 4)
            return any(h.get("Authorization") == "Bearer key-2" for h in FakeOpenAI.headers_seen)

        await wait_until(completed_with_new_key)
    completions = [
        h
        for (path, _), h in zip(FakeOpenAI.seen, FakeOpenAI.headers_seen, strict=True)
        if path == "/v1/completions"
    ]
    assert completions[0]["Authorization"] == "Bearer openai-key-1"
    assert completions[-1]["Authorization"] == "Bearer key-2"
    for headers in FakeOpenAI.headers_seen:
        assert not any(STORE_TOKEN in value for value in headers.values()), headers


async def test_without_an_openai_key_no_bearer_is_sent(fake_openai: str, tmp_path: Path) -> None:
    """No ``openaiApiKey``: the request carries no Authorization at all, though a store
    token is set (the fallback that used to send it is gone)."""
    FakeOpenAI.inline_prompt_ids = True
    settings = {
        "backend": "openai",
        "openaiUrl": fake_openai,
        "model": "base",
        "token": STORE_TOKEN,
        "storeUrl": "",
        "outboxPath": str(tmp_path / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
    }
    env = {"CRLHF_OPENAI_API_KEY": "", "CRLHF_TOKEN": ""}
    async with lsp_session(settings, env=env) as client:
        open_doc(client, URI, "def f():\n    ")
        assert await wait_until(lambda: inline(client, URI, 1, 4))
    assert FakeOpenAI.headers_seen
    for headers in FakeOpenAI.headers_seen:
        assert "Authorization" not in headers
        assert not any(STORE_TOKEN in value for value in headers.values()), headers
