"""Issue 17, "Remote engines hot-swap too": an adapter published in a real store reaches the
server behind the ``openai`` backend, through a real crlhf-lsp over stdio.

Against vLLM (the fake of :mod:`fake_openai`) crlhf-lsp loads the verified folder by path
(``/v1/load_lora_adapter``), asks for ``model: "<version>"`` only after the load answered,
keeps the two newest loaded and unloads the older; a failing load keeps the old adapter, says
why, and is tried again. Against llama-server it sets the scales of an adapter the server
was started with, and says that another needs a restart with ``--lora``. Before, the backend
only switched ``model`` and left the loading to someone's hands.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crlhf_lsp.adapters import AdapterUnavailable
from crlhf_lsp.backends.base import GenerationRequest
from crlhf_lsp.backends.openai import OpenAIBackend
from fake_openai import FakeOpenAI, serve_fake_openai
from lsp_harness import command, edit, inline, lsp_session, open_doc, wait_until

URI = "file:///work/demo.py"


def _adapter(folder: Path, seed: int) -> Path:
    """A PEFT-shaped folder (the fake server never reads the weights)."""
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(bytes([seed]) * 64)
    return folder


def _publish(live_store: Any, tmp: Path, version: str, seed: int) -> None:
    with live_store.client(live_store.trainer_token) as store:
        store.upload_adapter(
            _adapter(tmp / "made" / version, seed), version=version, base_model="base"
        )
        store.publish_adapter(version)


def _settings(tmp: Path, url: str, live_store: Any, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "openai",
        "openaiUrl": url,
        "model": "base",
        "storeUrl": live_store.url,
        "token": live_store.annotator_token,
        "outboxPath": str(tmp / "lsp" / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
    } | extra


def _paths() -> list[str]:
    return [path for path, _ in FakeOpenAI.seen]


def _models_asked() -> list[str]:
    """The ``model`` of each streamed completion (the editor's, not the load probes)."""
    return [b["model"] for p, b in FakeOpenAI.seen if p == "/v1/completions" and b.get("stream")]


async def _complete(client: Any, line: int) -> str:
    """A completion asked of the server (a new line each time, so none comes from a cache)."""
    edit(client, URI, line + 1, (line, 4), (line, 4), "pass\n    ")
    [item] = await inline(client, URI, line + 1, 4)
    return _models_asked()[-1] if item.insert_text else ""


@pytest.fixture
def vllm() -> Iterator[str]:
    with serve_fake_openai("vllm") as url:
        yield url


@pytest.fixture
def llama_server() -> Iterator[str]:
    with serve_fake_openai("llama-server") as url:
        FakeOpenAI.lora_adapters = [
            {"id": 0, "path": "/models/style.gguf", "scale": 1.0},
            {"id": 1, "path": "/models/adapters/v1.gguf", "scale": 0.0},
        ]
        yield url


async def test_vllm_loads_switches_then_unloads_and_a_failed_load_keeps_the_old(
    tmp_path: Path, vllm: str, live_store: Any
) -> None:
    cache = tmp_path / "lsp" / "adapters"
    _publish(live_store, tmp_path, "v1", seed=1)
    async with lsp_session(_settings(tmp_path, vllm, live_store)) as client:
        open_doc(client, URI, "def f():\n    ")
        assert await wait_until(lambda: inline(client, URI, 1, 4))
        # the base model answered (and, made ahead while the ghost text shows, may have
        # answered the position after an accept too: crlhf_lsp.suggest)
        assert set(_models_asked()) == {"base"}

        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"]) == ("loaded", "v1"), checked
        load = ("/v1/load_lora_adapter", {"lora_name": "v1", "lora_path": str(cache / "v1")})
        assert load in FakeOpenAI.seen
        # The verified folder, downloaded from the store, is what vLLM was told to read.
        assert (cache / "v1" / "adapter_model.safetensors").read_bytes() == bytes([1]) * 64
        assert await _complete(client, 1) == "v1"
        # The model switched only after the load and its probe answered.
        first_v1 = next(
            i for i, (p, b) in enumerate(FakeOpenAI.seen) if b and b.get("model") == "v1"
        )
        assert FakeOpenAI.seen.index(load) < first_v1

        # A load vLLM fails: v1 stays, completions go on, the user is told why.
        _publish(live_store, tmp_path, "v2", seed=2)
        FakeOpenAI.load_status = 500
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"]) == ("unavailable", "v1"), checked
        assert "answered 500" in checked["message"] and checked["message"].endswith("using v1")
        assert any("adapter v2 not loaded" in m.message for m in client.log_messages)
        assert await _complete(client, 2) == "v1"

        # Not refused for good: the next check loads it once vLLM takes it.
        FakeOpenAI.load_status = 200
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"]) == ("loaded", "v2"), checked
        assert await _complete(client, 3) == "v2"
        assert set(FakeOpenAI.loras) == {"v1", "v2"}  # the previous stays for a while

        _publish(live_store, tmp_path, "v3", seed=3)
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"]) == ("loaded", "v3"), checked
        assert set(FakeOpenAI.loras) == {"v2", "v3"}
        unload = ("/v1/unload_lora_adapter", {"lora_name": "v1"})
        load3 = next(
            i for i, (p, b) in enumerate(FakeOpenAI.seen) if b and b.get("lora_name") == "v3"
        )
        assert FakeOpenAI.seen.index(unload) > load3
        assert await _complete(client, 4) == "v3"


async def test_llama_server_selects_a_preloaded_adapter_by_its_scales(
    tmp_path: Path, llama_server: str, live_store: Any
) -> None:
    _publish(live_store, tmp_path, "v1", seed=1)
    async with lsp_session(_settings(tmp_path, llama_server, live_store)) as client:
        open_doc(client, URI, "def f():\n    ")
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"]) == ("loaded", "v1"), checked
        assert ("/lora-adapters", [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]) in (
            FakeOpenAI.seen
        )
        assert "/v1/load_lora_adapter" not in _paths()
        assert await wait_until(lambda: inline(client, URI, 1, 4))
        assert _models_asked()[-1] == "base"  # llama-server's adapter is global, not a model
        # The scales go with the completion too: llama-server clears the slot's KV cache
        # (computed under the old scales) only for a request whose own scales changed.
        asked = [b for p, b in FakeOpenAI.seen if p == "/v1/completions"][-1]
        assert asked["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]

        # One it was not started with: a restart with --lora is needed, and said.
        _publish(live_store, tmp_path, "v2", seed=2)
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"]) == ("unavailable", "v1"), checked
        assert "restart it with --lora" in checked["message"]
        assert any(
            "adapter v2 not loaded" in m.message and "--lora" in m.message
            for m in client.log_messages
        )
        assert [a["scale"] for a in FakeOpenAI.lora_adapters] == [0.0, 1.0]


def test_openai_adapter_dir_gets_a_copy_the_server_reads(tmp_path: Path, vllm: str) -> None:
    """With ``openaiAdapterDir`` (a folder shared with a vLLM on another machine) the
    verified folder is copied there under its version, and that path is what vLLM loads."""
    shared = tmp_path / "shared"
    backend = OpenAIBackend(vllm, "base", server="vllm", adapter_dir=str(shared))
    try:
        backend.load_adapter(_adapter(tmp_path / "cache" / "v7", seed=7), "v7")
        out = backend.generate(GenerationRequest("def f():", max_tokens=4), threading.Event())
    finally:
        backend.close()
    assert FakeOpenAI.loras == {"v7": str(shared / "v7")}
    weights = shared / "v7" / "adapter_model.safetensors"
    assert weights.read_bytes() == bytes([7]) * 64
    assert out.text == "x = 1" and _models_asked() == ["v7"]

    # A copy changed in the shared folder is replaced by the verified one before use.
    weights.write_bytes(b"tampered")
    again = OpenAIBackend(vllm, "base", server="vllm", adapter_dir=str(shared))
    try:
        again.load_adapter(tmp_path / "cache" / "v7", "v7")
    finally:
        again.close()
    assert weights.read_bytes() == bytes([7]) * 64
    assert [p.name for p in shared.iterdir()] == ["v7"]  # no work folder left behind
    # vLLM listed v7 already (as when a teammate's crlhf-lsp loaded it): not loaded twice.
    assert _paths().count("/v1/load_lora_adapter") == 1


def test_llama_servers_token_ids_and_prompt_ids_are_recorded(llama_server: str) -> None:
    """llama-server's log-probs come as ``content`` entries with ids, and its ``/tokenize``
    answers vLLM's shape with no tokens: neither leaves the trainer without ids."""
    backend = OpenAIBackend(llama_server, "base")
    try:
        out = backend.generate(GenerationRequest("def f():", max_tokens=4), threading.Event())
    finally:
        backend.close()
    assert (out.text, out.token_ids, out.token_logprobs) == ("x = 1", [5, 7], [-0.5, -1.0])
    assert out.prompt_token_ids == [2, 100, 101, 102]
    assert ("/tokenize", {"content": "def f():", "add_special": True}) in FakeOpenAI.seen


def test_a_server_that_does_not_answer_is_asked_what_it_is_at_the_next_adapter(
    tmp_path: Path,
) -> None:
    backend = OpenAIBackend("http://127.0.0.1:9", "base")
    try:
        with pytest.raises(AdapterUnavailable, match="could not reach"):
            backend.load_adapter(_adapter(tmp_path / "v1", seed=1), "v1")
    finally:
        backend.close()
    assert backend.server == "auto" and backend.adapter is None
