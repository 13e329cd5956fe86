"""Issue 17, "Remote engines hot-swap too", against a real llama-server: the binary that
``tests/llama_server/setup.sh`` builds from the llama.cpp that llama-cpp-python vendors
(``make setup-e2e``), serving the tiny GGUF with two GGUF LoRA adapters preloaded
(``--lora``). The fake of test_openai_adapters.py says what crlhf sends; this says that the
real server does what crlhf asked: ``GET /lora-adapters`` shows the scales crlhf set, and
greedy completions of one prompt change with the adapter, and are those of a fresh run with
that adapter (no KV cache of another adapter's prompt in them). Skipped, with the command to
run, where the binary has not been built (``make check`` does not build it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("gguf")

from crlhf_lsp.backends.base import Generation, GenerationRequest  # noqa: E402
from crlhf_lsp.backends.openai import OpenAIBackend  # noqa: E402
from crlhf_models.gguf_lora import convert_peft_to_gguf  # noqa: E402
from llama_server.process import find_llama_server, run_llama_server  # noqa: E402
from lsp_harness import command, edit, inline, lsp_session, open_doc, wait_until  # noqa: E402
from tiny_gguf import build_tiny_gguf  # noqa: E402
from tiny_model import ALL_TARGETS, build_tiny_model, make_tiny_adapter  # noqa: E402

pytestmark = pytest.mark.e2e

PROMPT = "def add(a, b):\n"
URI = "file:///work/demo.py"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two PEFT adapters of the tiny model (what nightly runs publish), by version; their
    GGUF forms lie beside them as ``<version>.gguf``, the names llama-server is given."""
    made = tmp_path_factory.mktemp("adapters")
    folders = {}
    for seed, version in enumerate(("v1", "v2"), start=3):
        folder = make_tiny_adapter(
            build_tiny_model(), made / version, seed=seed, scale=0.3, target_modules=ALL_TARGETS
        )
        convert_peft_to_gguf(folder, made / f"{version}.gguf")
        folders[version] = folder
    return folders


@pytest.fixture(scope="module")
def binary() -> Path:
    found = find_llama_server()
    if found is None:
        pytest.skip("no llama-server built: run `make setup-e2e` (tests/llama_server/setup.sh)")
    return found


@pytest.fixture(scope="module")
def llama_server(binary: Path, adapters: dict[str, Path]) -> Iterator[str]:
    """One server for the module (``binary`` first: a missing one skips before the adapters
    are made), its adapters at the ids 0 (v1) and 1 (v2)."""
    ggufs = [folder.parent / f"{version}.gguf" for version, folder in adapters.items()]
    with run_llama_server(binary, build_tiny_gguf(), ggufs) as url:
        yield url


def _scales(url: str) -> dict[str, float]:
    """What the server itself says: adapter file name → scale."""
    listed = httpx.get(f"{url}/lora-adapters", timeout=10).json()
    return {Path(a["path"]).name: a["scale"] for a in listed}


def _generate(backend: OpenAIBackend) -> Generation:
    return backend.generate(GenerationRequest(PROMPT, max_tokens=8), threading.Event())


def _fresh(url: str, scales: list[float]) -> list[float]:
    """The greedy log-probs of a run with no prompt cache and these scales: the truth."""
    body = {
        "prompt": PROMPT,
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": 1,
        "cache_prompt": False,
        "lora": [{"id": i, "scale": s} for i, s in enumerate(scales)],
    }
    answer = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()
    return [entry["logprob"] for entry in answer["choices"][0]["logprobs"]["content"]]


def test_the_backend_sets_llama_servers_scales_and_its_completions_follow(
    llama_server: str, adapters: dict[str, Path]
) -> None:
    backend = OpenAIBackend(llama_server, "tiny")
    try:
        # Until someone sets them, every --lora applies at scale 1 (--lora-init-without-apply
        # changes nothing here), both adapters at once. This leaves the prompt in the cache.
        assert _scales(llama_server) == {"v1.gguf": 1.0, "v2.gguf": 1.0}
        both = _generate(backend)
        assert both.token_logprobs == pytest.approx(_fresh(llama_server, [1.0, 1.0]), abs=1e-4)
        assert backend.server == "auto"  # asked only at the first adapter
        outputs = {}
        for version, scales in (("v1", [1.0, 0.0]), ("v2", [0.0, 1.0]), ("v1", [1.0, 0.0])):
            backend.load_adapter(adapters[version], version)
            assert backend.server == "llama-server" and backend.adapter == version
            assert _scales(llama_server) == {"v1.gguf": scales[0], "v2.gguf": scales[1]}
            out = _generate(backend)
            # The same prompt was served just before with another adapter: its KV cache
            # must not be reused, what is served is what a fresh run gives.
            assert out.token_logprobs == pytest.approx(_fresh(llama_server, scales), abs=1e-4)
            outputs.setdefault(version, out)
    finally:
        backend.close()
    base = _fresh(llama_server, [0.0, 0.0])
    first = [lps[0] for lps in (base, outputs["v1"].token_logprobs, outputs["v2"].token_logprobs)]
    assert len({round(lp, 4) for lp in first}) == 3, first  # each adapter changes the model
    # What the trainer replays: the ids of the prompt and of the tokens served.
    tokenized = httpx.post(f"{llama_server}/tokenize", json={"content": PROMPT}).json()
    assert both.prompt_token_ids == tokenized["tokens"]
    assert both.token_ids and len(both.token_ids) == len(both.token_logprobs or [])


def _last_request_lora(url: str) -> list[dict[str, Any]]:
    """The ``lora`` of the last completion the one slot served, as llama-server parsed it."""
    [slot] = httpx.get(f"{url}/slots", timeout=10).json()
    return slot["params"]["lora"]


def _publish(live_store: Any, version: str, folder: Path) -> None:
    with live_store.client(live_store.trainer_token) as store:
        gguf = folder.parent / f"{version}.gguf"
        store.upload_adapter(folder, version=version, base_model="tiny", gguf=gguf)
        store.publish_adapter(version)


async def test_crlhf_lsp_switches_llama_servers_adapters_as_they_are_published(
    tmp_path: Path, llama_server: str, adapters: dict[str, Path], live_store: Any
) -> None:
    settings = {
        "backend": "openai",
        "openaiUrl": llama_server,
        "model": "tiny",
        "storeUrl": live_store.url,
        "token": live_store.annotator_token,
        "outboxPath": str(tmp_path / "lsp" / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
    }
    async with lsp_session(settings) as client:
        open_doc(client, URI, "def add(a, b):\n    ")
        for line, (version, scales) in enumerate((("v1", (1.0, 0.0)), ("v2", (0.0, 1.0))), 1):
            _publish(live_store, version, adapters[version])
            checked = await command(client, "crlhf.checkAdapter")
            assert (checked["outcome"], checked["version"]) == ("loaded", version), checked
            assert _scales(llama_server) == {"v1.gguf": scales[0], "v2.gguf": scales[1]}
            # A new line each time: the suggestion on screen would be answered again as is.
            edit(client, URI, line + 1, (line, 4), (line, 4), "pass\n    ")
            assert await wait_until(lambda line=line: inline(client, URI, line + 1, 4))
            # The editor's completion named the scales itself (see openai_lora.py).
            assert _last_request_lora(llama_server) == [
                {"id": 0, "scale": scales[0]},
                {"id": 1, "scale": scales[1]},
            ]

        # Published, but not among the files llama-server was started with: a restart with
        # --lora is needed, said, and v2 stays.
        made = adapters["v1"].parent
        v3 = make_tiny_adapter(
            build_tiny_model(), made / "v3", seed=9, scale=0.3, target_modules=ALL_TARGETS
        )
        convert_peft_to_gguf(v3, made / "v3.gguf")
        _publish(live_store, "v3", v3)
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["outcome"], checked["version"]) == ("unavailable", "v2"), checked
        assert "restart it with --lora" in checked["message"]
        assert _scales(llama_server) == {"v1.gguf": 0.0, "v2.gguf": 1.0}
