"""A fake OpenAI-compatible server on loopback (real HTTP), speaking as vLLM or llama-server.

Completions stream two tokens with their ids and log-probs. As ``vllm`` it also loads and
unloads LoRA adapters at run time (``/v1/load_lora_adapter``, ``/v1/unload_lora_adapter``),
lists them in ``/v1/models`` and refuses a completion for a ``model`` it has not loaded, as
vLLM does; as ``llama-server`` it lists the adapters it was "started with" at
``GET /lora-adapters`` and sets their scales with ``POST /lora-adapters``, and speaks as the
real one does (tests/lsp/test_llama_server.py): log-probs as ``content: [{"id", "logprob"}]``,
no prompt ids in the stream, and ``/tokenize`` reads only ``content`` (vLLM's ``prompt`` gets
no tokens). Every request is recorded in ``seen`` (path and body, in order) and its headers
in ``headers_seen``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_IDS = [2, 100, 101, 102]


class FakeOpenAI(BaseHTTPRequestHandler):
    inline_prompt_ids = True
    server_kind = "vllm"  # or "llama-server"
    base_model = "base"
    seen: list[tuple[str, Any]] = []
    headers_seen: list[dict[str, str]] = []  # every request's headers, in order
    loras: dict[str, str] = {}  # vLLM: name -> path of the adapters loaded
    load_status = 200  # vLLM: what /v1/load_lora_adapter answers (500: a failing load)
    lora_adapters: list[dict[str, Any]] = []  # llama-server: [{"id", "path", "scale"}]

    @classmethod
    def reset(cls, server_kind: str = "vllm") -> None:
        cls.inline_prompt_ids, cls.server_kind, cls.load_status = True, server_kind, 200
        cls.seen, cls.headers_seen, cls.loras, cls.lora_adapters = [], [], {}, []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append((f"GET {self.path}", None))
        self.headers_seen.append(dict(self.headers.items()))
        if self.path == "/v1/models":
            names = [self.base_model, *(self.loras if self.server_kind == "vllm" else [])]
            return self._json({"data": [{"id": n, "object": "model"} for n in names]})
        if self.path == "/lora-adapters" and self.server_kind == "llama-server":
            return self._json(self.lora_adapters)
        return self._json({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        self.headers_seen.append(dict(self.headers.items()))
        if self.path == "/tokenize":
            if self.server_kind == "llama-server":
                return self._json({"tokens": PROMPT_IDS if "content" in body else []})
            if "prompt" in body:  # vLLM's shape
                return self._json({"tokens": PROMPT_IDS, "count": 4})
            return self._json({"error": "no"}, 400)
        if self.server_kind == "vllm" and self.path.endswith("_lora_adapter"):
            return self._vllm_lora(body)
        if self.server_kind == "llama-server" and self.path == "/lora-adapters":
            scales = {item["id"]: item["scale"] for item in body}
            for adapter in self.lora_adapters:
                adapter["scale"] = scales.get(adapter["id"], 0.0)
            return self._json({"success": True})
        if self.path != "/v1/completions":
            return self._json({"error": "not found"}, 404)
        if self.server_kind == "vllm" and body.get("model") not in (self.base_model, *self.loras):
            return self._json({"error": f"The model `{body.get('model')}` does not exist."}, 404)
        self._stream(body)

    def _vllm_lora(self, body: dict[str, Any]) -> None:
        name = body.get("lora_name")
        if self.path == "/v1/unload_lora_adapter":
            if self.loras.pop(name, None) is None:
                return self._json({"error": f"The lora adapter '{name}' cannot be found."}, 404)
            return self._json({"status": "ok"})
        if self.load_status >= 400:
            return self._json({"error": "failed to load the adapter"}, self.load_status)
        if name in self.loras and not body.get("load_inplace"):
            return self._json({"error": f"The lora adapter '{name}' has already been loaded."}, 400)
        self.loras[name] = body["lora_path"]
        return self._json({"status": "ok"})

    def _stream(self, body: dict[str, Any]) -> None:
        first = {"text": "x", "logprobs": _logprobs(self.server_kind, 5, "x", -0.5)}
        if self.inline_prompt_ids and body.get("return_token_ids") and self.server_kind == "vllm":
            first["prompt_token_ids"] = PROMPT_IDS
        second = {"text": " = 1", "logprobs": _logprobs(self.server_kind, 7, " = 1", -1.0)}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for choice in (first, second):
            self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, obj: Any, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _logprobs(server_kind: str, token_id: int, text: str, logprob: float) -> dict[str, Any]:
    if server_kind == "llama-server":  # the shape of chat completions, with the ids
        entry = {"id": token_id, "token": text, "bytes": list(text.encode()), "logprob": logprob}
        return {"content": [entry | {"top_logprobs": []}]}
    return {"tokens": [f"token_id:{token_id}"], "token_logprobs": [logprob]}


@contextmanager
def serve_fake_openai(server_kind: str = "vllm") -> Iterator[str]:
    """The fake's base URL while it runs; its class state reset first."""
    FakeOpenAI.reset(server_kind)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
