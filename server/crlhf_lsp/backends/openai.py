"""The ``openai`` backend: any OpenAI-compatible ``/v1/completions`` server (vLLM, llama.cpp's
server, TGI …), streamed so that a cancelled request stops reading at the next token.

A published adapter, downloaded and verified by crlhf-lsp, is handed to the server by
:mod:`crlhf_lsp.backends.openai_lora` (vLLM loads it at run time and it is then selected by
``model: "<version>"``; llama-server selects among the adapters it was started with). The
``model`` sent changes only once the server took the adapter; a failure keeps the old one.

Token ids and log-probs are recorded when the server returns them (``logprobs: 1``): vLLM
gives ``tokens`` as ``token_id:<n>`` (``return_tokens_as_token_ids``) and
``token_logprobs``; llama-server gives ``content: [{"id", "logprob", ...}]``, the shape of
chat completions. The trainer also needs the prompt's ids (it trains on exactly what was
served): vLLM returns them with ``return_token_ids`` (``prompt_token_ids`` in the first
streamed choice); servers that do not are asked ``POST /tokenize`` (vLLM and llama.cpp's
``llama-server`` both have it). Without either the completion is still served, and the
trainer skips it, counted.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx

from crlhf_lsp.backends.base import Backend, Generation, GenerationRequest
from crlhf_lsp.backends.openai_lora import LlamaServerAdapters, VLLMAdapters, detect
from crlhf_lsp.errors import BackendError
from crlhf_lsp.settings import Settings


def from_settings(settings: Settings) -> OpenAIBackend:
    # The server's own key, never the store's token: openaiUrl may be another party's
    # server, and the annotator's token would let it write ratings in their name.
    return OpenAIBackend(
        settings.openaiUrl,
        settings.model or "default",
        api_key=settings.openaiApiKey,
        server=settings.openaiServer,
        adapter_dir=settings.openaiAdapterDir,
    )


class OpenAIBackend(Backend):
    adapter_files = True  # the verified folder: vLLM reads it (or a copy) by path

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
        server: str = "auto",
        adapter_dir: str = "",
    ) -> None:
        self.name = model
        self.adapter: str | None = None
        self.server = server
        """``vllm`` or ``llama-server``; ``auto`` until the first adapter is loaded."""
        self._adapter_dir = adapter_dir
        self._engine: VLLMAdapters | LlamaServerAdapters | None = None
        self._model = model
        """The ``model`` sent: the base model's name, or the loaded adapter's (vLLM)."""
        self._fields: dict[str, Any] = {}
        """More fields of every completion request: llama-server's adapter ``lora``."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=60.0, transport=transport
        )

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "logprobs": 1,
            "stream": True,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
        }
        if request.stop:
            body["stop"] = request.stop
        if request.temperature > 0:
            body["seed"] = request.seed  # vLLM and llama-server take OpenAI's seed
        body |= self._fields
        text, tokens, logprobs = "", [], []
        prompt_ids: list[int] | None = None
        try:
            with self._http.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise BackendError(
                        f"{self._http.base_url}/v1/completions answered "
                        f"{response.status_code}: {response.text[:300]}"
                    )
                for choice in _choices(response.iter_lines()):
                    if prompt_ids is None and isinstance(choice.get("prompt_token_ids"), list):
                        prompt_ids = [int(t) for t in choice["prompt_token_ids"]]
                    text += choice.get("text") or ""
                    _add_logprobs(choice.get("logprobs") or {}, tokens, logprobs)
                    if cancel.is_set() or (request.should_stop and request.should_stop(text)):
                        break
        except httpx.HTTPError as exc:
            raise BackendError(f"could not reach {self._http.base_url}: {exc!r}") from exc
        ids = _token_ids(tokens)
        if ids is not None and prompt_ids is None:
            prompt_ids = self._tokenize(request.prompt)
        return Generation(
            text=text,
            token_ids=ids,
            prompt_token_ids=prompt_ids if ids is not None else None,
            # A log-prob the server left out (null) makes the lists differ; the store
            # refuses such a row (one log-prob per id), so the ids go alone.
            token_logprobs=logprobs if ids is not None and len(logprobs) == len(ids) else None,
            cancelled=cancel.is_set(),
        )

    def _tokenize(self, prompt: str) -> list[int] | None:
        """The prompt's ids from the server's ``/tokenize`` (vLLM: ``prompt``; llama-server:
        ``content``, with the BOS its completions add), or None when it has no such endpoint.
        llama-server answers vLLM's shape with no tokens (it reads only ``content``): an
        empty list for a prompt that is not empty is no answer."""
        bodies = ({"model": self.name, "prompt": prompt}, {"content": prompt, "add_special": True})
        for body in bodies:
            try:
                response = self._http.post("/tokenize", json=body)
            except httpx.HTTPError:
                return None
            try:
                tokens = response.json().get("tokens") if response.status_code < 400 else None
            except (ValueError, AttributeError):  # not JSON, or not an object
                tokens = None
            ints = isinstance(tokens, list) and all(isinstance(t, int) for t in tokens)
            if ints and (tokens or not prompt):
                return tokens
        return None

    def load_adapter(self, folder: Path, version: str) -> None:
        """Have the server load ``version`` (raises, the old adapter kept, when it cannot);
        completions ask for it from then on, and the oldest adapters are unloaded."""
        engine = self._adapter_engine()
        self._model = engine.load(folder, version)
        self._fields = engine.completion_fields()
        self.adapter = version
        engine.retire()

    def unload_adapter(self) -> None:
        self.adapter = None
        self._model = self.name
        if self._engine is not None:
            self._engine.unload()
            self._fields = self._engine.completion_fields()

    def _adapter_engine(self) -> VLLMAdapters | LlamaServerAdapters:
        if self._engine is None:
            if self.server == "auto":
                self.server = detect(self._http)
            if self.server == "llama-server":
                self._engine = LlamaServerAdapters(self._http, self.name)
            else:
                self._engine = VLLMAdapters(self._http, self._adapter_dir)
        return self._engine

    def close(self) -> None:
        self._http.close()


def _choices(lines: Any) -> Any:
    """The first choice of each server-sent event of a streamed completion."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise BackendError(f"the completion server sent garbage: {data[:200]!r}") from exc
        choices = event.get("choices") or []
        if choices:
            yield choices[0]


def _add_logprobs(lp: dict[str, Any], tokens: list[str], logprobs: list[float]) -> None:
    """One streamed choice's ``logprobs`` onto ``tokens`` (as ``token_id:<n>``) and
    ``logprobs``, in vLLM's shape or llama-server's (``content``, with the ids)."""
    for entry in lp.get("content") or []:
        if isinstance(entry, dict) and isinstance(entry.get("id"), int):
            tokens.append(f"token_id:{entry['id']}")
            if entry.get("logprob") is not None:
                logprobs.append(float(entry["logprob"]))
    tokens += lp.get("tokens") or []
    logprobs += [x for x in lp.get("token_logprobs") or [] if x is not None]


def _token_ids(tokens: list[str]) -> list[int] | None:
    if not tokens or not all(t.startswith("token_id:") for t in tokens):
        return None
    return [int(t.removeprefix("token_id:")) for t in tokens]
