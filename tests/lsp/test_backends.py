"""crlhf_lsp.backends in process: the backend table, the in-memory backend tests drive the
server with, and the openai backend's stream parsing against an httpx.MockTransport (its
real-HTTP tests are in tests/lsp/test_openai.py)."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
from crlhf_contract.schemas import CompletionIn
from crlhf_lsp.backends import BACKENDS, GenerationRequest, MemoryBackend
from crlhf_lsp.backends.openai import OpenAIBackend


def test_backend_table_and_memory_backend() -> None:
    assert set(BACKENDS) >= {"local", "openai", "llamacpp"}
    backend = MemoryBackend(["a", "b"])
    assert backend.generate(GenerationRequest("p"), threading.Event()).text == "a"
    assert backend.generate(GenerationRequest("p"), threading.Event()).text == "b"


def test_openai_backend_streams_tokens_and_logprobs() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2]})
        if request.method == "GET":  # no /lora-adapters (not llama-server), no /v1/models
            return httpx.Response(404)
        seen.update(json.loads(request.content))  # the adapter's load and probe, then ours
        chunks = [
            {
                "choices": [
                    {"text": "x", "logprobs": {"tokens": ["token_id:5"], "token_logprobs": [-0.5]}}
                ]
            },
            {
                "choices": [
                    {
                        "text": " = 1",
                        "logprobs": {"tokens": ["token_id:7"], "token_logprobs": [-1.0]},
                    }
                ]
            },
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body)

    backend = OpenAIBackend("http://vllm", "base", transport=httpx.MockTransport(handler))
    backend.load_adapter(Path("."), "v3")
    out = backend.generate(GenerationRequest("p", max_tokens=4, stop=["\n"]), threading.Event())
    assert (out.text, out.token_ids, out.token_logprobs) == ("x = 1", [5, 7], [-0.5, -1.0])
    assert out.prompt_token_ids == [1, 2]  # from /tokenize: the server sent none inline
    assert seen["model"] == "v3" and seen["stop"] == ["\n"] and "seed" not in seen
    backend.generate(GenerationRequest("p", temperature=0.8, seed=7), threading.Event())
    assert seen["seed"] == 7 and seen["temperature"] == 0.8  # a sample the server repeats


def test_openai_backend_drops_logprobs_that_do_not_match_the_tokens() -> None:
    """A null log-prob left out made the lists differ, and the store refuses such a row."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1]})
        lp = {"tokens": ["token_id:5", "token_id:7"], "token_logprobs": [None, -1.0]}
        chunk = {"choices": [{"text": "x =", "logprobs": lp}]}
        return httpx.Response(200, text=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")

    backend = OpenAIBackend("http://vllm", "base", transport=httpx.MockTransport(handler))
    out = backend.generate(GenerationRequest("p", max_tokens=4), threading.Event())
    assert (out.token_ids, out.token_logprobs) == ([5, 7], None)
    row = CompletionIn(
        id=uuid.uuid4(), prompt="p", text=out.text, model="m", token_ids=out.token_ids
    )
    assert row.token_logprobs is None
