"""The ``openai`` backend against a fake OpenAI-compatible server on loopback (real HTTP).

vLLM returns the prompt's token ids with ``return_token_ids``; a server that does not is
asked ``POST /tokenize``. Either way a completion served past one machine carries what
the trainer needs (issue 13: before, every such completion was skipped, "no training
data").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from crlhf_lsp.backends.base import GenerationRequest
from crlhf_lsp.backends.openai import OpenAIBackend

PROMPT_IDS = [2, 100, 101, 102]


class FakeOpenAI(BaseHTTPRequestHandler):
    inline_prompt_ids = True
    seen: list[tuple[str, dict]] = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        if self.path == "/tokenize":
            if "prompt" in body:  # vLLM's shape
                return self._json({"tokens": PROMPT_IDS, "count": 4})
            return self._json({"error": "no"}, 400)
        if self.path != "/v1/completions":
            return self._json({"error": "not found"}, 404)
        first = {"text": "x", "logprobs": {"tokens": ["token_id:5"], "token_logprobs": [-0.5]}}
        if self.inline_prompt_ids and body.get("return_token_ids"):
            first["prompt_token_ids"] = PROMPT_IDS
        second = {"text": " = 1", "logprobs": {"tokens": ["token_id:7"], "token_logprobs": [-1.0]}}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for choice in (first, second):
            self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, obj: dict, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_openai() -> Iterator[str]:
    FakeOpenAI.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


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
