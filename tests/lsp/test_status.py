"""What the status bar and the first hour's messages are made of (issue 17), through a real
crlhf-lsp over stdio:

- ``crlhf/statusChanged`` says ``generating`` while a completion waits for the model and
  then ``lastLatencyMs``, in one coalesced push each, and nothing for a keystroke typed
  through the suggestion on screen;
- ``modelLoading`` while the model loads (the status bar said "?");
- ``crlhf.checkAdapter`` says what happened ("no adapter published yet", "adapter v1
  loaded", "already on v1", "v2 refused: …") and the status knows none is published;
- ``crlhf.checkToken`` names the annotator ("signed in as alice") or says the token is
  refused, and ``tokenRefused`` tells a refused token from a store that is down.

The completions come from a fake OpenAI-compatible server that takes its time, so that
"in flight" lasts long enough to be seen on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from crlhf_cli.lsp import plain
from crlhf_contract.protocol import M_STATUS_CHANGED
from crlhf_lsp.adapters import AdapterManager, AdapterUnavailable
from crlhf_lsp.errors import AdapterError
from fake_openai import serve_fake_openai
from lsp_harness import command, edit, inline, lsp_session, open_doc, request, wait_until
from pytest_lsp import LanguageClient

URI = "file:///work/status.py"
DELAY = 0.6  # seconds the fake model takes per completion


class SlowOpenAI(BaseHTTPRequestHandler):
    """``/v1/completions`` that answers "x = 1" after :data:`DELAY` seconds."""

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(DELAY)
        choice = {
            "text": "x = 1",
            "logprobs": {"tokens": ["token_id:5"], "token_logprobs": [-0.5]},
            "prompt_token_ids": [1, 2],
        }
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def slow_openai() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "openai",
        "openaiUrl": "http://127.0.0.1:9",
        "model": "base",
        "storeUrl": "",
        "outboxPath": str(tmp_path / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
    } | extra


def _record_pushes(client: LanguageClient) -> list[dict[str, Any]]:
    pushes: list[dict[str, Any]] = []

    @client.feature(M_STATUS_CHANGED)
    def status_changed(params: Any) -> None:
        pushes.append(plain(params) if not isinstance(params, dict) else params)

    return pushes


async def test_the_status_says_generating_then_the_latency(
    tmp_path: Path, slow_openai: str
) -> None:
    env = {"CRLHF_OPENAI_API_KEY": "", "CRLHF_TOKEN": ""}
    async with lsp_session(_settings(tmp_path, openaiUrl=slow_openai), env=env) as client:
        pushes = _record_pushes(client)
        open_doc(client, URI, "def f():\n    ")
        await wait_until(lambda: _status_when(client, modelLoading=False))
        await asyncio.sleep(0.3)  # the start-up's pushes are past
        before = len(pushes)
        [item] = await inline(client, URI, 1, 4)
        assert item.insert_text == "x = 1"
        done = await wait_until(lambda: [p for p in pushes[before:] if not p["generating"]])
        during = [p for p in pushes[before:] if p["generating"]]
        # One push as the request started, one once it ended: coalesced, never per step.
        assert len(during) == 1 and during[0]["lastLatencyMs"] is None, pushes[before:]
        assert len(pushes) - before == 2, pushes[before:]
        assert DELAY * 1000 <= done[0]["lastLatencyMs"] < 30_000
        assert (await request(client, "crlhf/status"))["lastLatencyMs"] == done[0]["lastLatencyMs"]

        # A keystroke typed through the suggestion asks nothing of the model: no push.
        edit(client, URI, 2, (1, 4), (1, 4), "x")
        [item] = await inline(client, URI, 1, 5)
        assert item.insert_text == " = 1"
        await asyncio.sleep(0.3)  # longer than the push delay: a push would have come by now
        assert len(pushes) - before == 2, pushes[before:]


@pytest.mark.slow  # a crlhf-lsp importing torch and loading a model: 5-17 s
async def test_the_status_says_the_model_is_loading(tmp_path: Path, tiny_model: Path) -> None:
    settings = _settings(tmp_path, backend="local", model=str(tiny_model))
    async with lsp_session(settings) as client:
        pushes = _record_pushes(client)
        # Asked as initialize ends, long before torch and the model are loaded.
        assert (await request(client, "crlhf/status"))["modelLoading"] is True
        ready = await wait_until(lambda: [p for p in pushes if not p["modelLoading"]], 120)
        assert ready[0]["model"] == str(tiny_model)


# --- adapters ------------------------------------------------------------------------------


def _adapter_folder(tmp_path: Path, name: str) -> Path:
    import numpy as np
    from safetensors.numpy import save

    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 4, "base_model_name_or_path": "m"}')
    (folder / "adapter_model.safetensors").write_bytes(save({"lora_A": np.ones((2, 2))}))
    return folder


def _publish(live_store, tmp_path: Path, version: str) -> None:  # type: ignore[no-untyped-def]
    with live_store.client(live_store.trainer_token) as store:
        store.upload_adapter(_adapter_folder(tmp_path, version), version=version, base_model="m")
        store.publish_adapter(version)


def test_an_adapter_check_says_what_happened(tmp_path: Path, live_store) -> None:
    changes: list[bool | None] = []
    refuse = {"v2"}

    def swap(folder: Path, version: str) -> float:
        if version in refuse:
            raise AdapterError("adapter_model.safetensors: sha256 differs from the registry's")
        return 0.012

    manager = AdapterManager(
        tmp_path / "cache",
        client=lambda: live_store.client(),
        swap=swap,
        announce=lambda swapped: None,
        log=lambda message, error: None,
    )
    manager.on_change = lambda: changes.append(manager.published)
    checked = manager.check_now()
    assert (checked.outcome, checked.version, checked.latest) == ("none", None, None)
    assert checked.message == "no adapter published yet; using the base model"
    assert manager.published is False and changes == [False]

    _publish(live_store, tmp_path, "v1")
    checked = manager.check_now()
    assert (checked.outcome, checked.version, checked.message) == (
        "loaded",
        "v1",
        "adapter v1 loaded in 12 ms",
    )
    assert checked.swapped is not None and changes == [False, True]
    assert manager.check_now().message == "already on v1"

    _publish(live_store, tmp_path, "v2")
    for _ in range(2):  # refused, and said again without trying again
        checked = manager.check_now()
        assert (checked.outcome, checked.version, checked.latest) == ("refused", "v1", "v2")
        assert checked.message == (
            "v2 refused: adapter_model.safetensors: sha256 differs from the registry's; using v1"
        )

    live_store.stop()
    checked = manager.check_now()
    assert checked.outcome == "unreachable" and checked.message.endswith("; using v1")
    manager.client = lambda: None
    assert manager.check_now().message == "no store is set (crlhf.storeUrl); using v1"


def test_an_adapter_the_server_cannot_take_now_is_tried_again(tmp_path: Path, live_store) -> None:
    """A model server that cannot take a verified adapter (vLLM down, llama-server started
    without it) does not get it refused for good: the old one stays, the next check retries."""
    down = [True]
    logged: list[str] = []

    def swap(folder: Path, version: str) -> float:
        if down[0]:
            raise AdapterUnavailable("http://vllm/v1/load_lora_adapter answered 503")
        return 0.01

    manager = AdapterManager(
        tmp_path / "cache",
        client=lambda: live_store.client(),
        swap=swap,
        announce=lambda swapped: None,
        log=lambda message, error: logged.append(message),
    )
    _publish(live_store, tmp_path, "v1")
    for _ in range(2):
        checked = manager.check_now()
        assert (checked.outcome, checked.version, checked.latest) == ("unavailable", None, "v1")
        assert checked.message == (
            "v1 not loaded: http://vllm/v1/load_lora_adapter answered 503; using the base model"
        )
    assert len(logged) == 2 and "adapter v1 not loaded" in logged[0]
    down[0] = False
    assert manager.check_now().outcome == "loaded" and manager.current == "v1"


@pytest.fixture
def fake_vllm() -> Iterator[str]:
    """A vLLM that loads the adapters crlhf-lsp hands it (issue 17)."""
    with serve_fake_openai("vllm") as url:
        yield url


async def test_check_adapter_and_the_status_say_none_is_published(
    tmp_path: Path, live_store, fake_vllm: str
) -> None:
    settings = _settings(
        tmp_path, openaiUrl=fake_vllm, storeUrl=live_store.url, token=live_store.annotator_token
    )
    async with lsp_session(settings) as client:
        assert (await request(client, "crlhf/status"))["adapterPublished"] is None
        checked = await command(client, "crlhf.checkAdapter")
        assert checked["outcome"] == "none" and checked["swapped"] is False
        assert checked["message"] == "no adapter published yet; using the base model"
        assert (await request(client, "crlhf/status"))["adapterPublished"] is False
        _publish(live_store, tmp_path, "v1")
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"], checked["swapped"]) == (
            "loaded",
            "v1",
            True,
        )
        assert checked["message"].startswith("adapter v1 loaded in ")
        status = await request(client, "crlhf/status")
        assert (status["adapterPublished"], status["adapterVersion"]) == (True, "v1")


# --- the token ------------------------------------------------------------------------------


async def test_check_token_names_the_annotator_or_says_it_is_refused(
    tmp_path: Path, live_store
) -> None:
    settings = _settings(tmp_path, storeUrl=live_store.url, token="mistyped-token")
    async with lsp_session(settings) as client:
        status = await wait_until(
            lambda: _status_when(client, storeReachable=False, tokenRefused=True), timeout=60
        )
        assert status["storeProblem"].startswith("token refused (401)")

        good = await command(client, "crlhf.checkToken", live_store.annotator_token)
        assert good == {
            "signedIn": True,
            "annotator": "alice",
            "refused": False,
            "message": "signed in as alice",
        }
        bad = await command(client, "crlhf.checkToken")  # the settings' token
        assert (bad["signedIn"], bad["refused"], bad["annotator"]) == (False, True, None)
        assert bad["message"].startswith("token refused: token refused (401)")

        live_store.stop()
        down = await command(client, "crlhf.checkToken", live_store.annotator_token)
        assert (down["signedIn"], down["refused"]) == (False, False)
        assert down["message"].startswith("not checked: store unreachable")

    async with lsp_session(_settings(tmp_path / "none")) as client:
        nowhere = await command(client, "crlhf.checkToken", "any")
        assert nowhere["message"] == "no store is set (crlhf.storeUrl): not checked"


async def _status_when(client, **expected):  # type: ignore[no-untyped-def]
    status = await request(client, "crlhf/status")
    return status if all(status[k] == v for k, v in expected.items()) else None
