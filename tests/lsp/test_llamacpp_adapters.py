"""The GGUF LoRA through the registry: trainer hook → store (two artifacts) → crlhf-lsp swap."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from crlhf_lsp.adapters import AdapterManager, timed  # noqa: E402
from crlhf_lsp.backends.llamacpp import LlamaCppBackend  # noqa: E402
from crlhf_models.errors import AdapterError  # noqa: E402
from crlhf_models.gguf_lora import gguf_artifact  # noqa: E402
from tiny_gguf import build_tiny_gguf  # noqa: E402
from tiny_model import ALL_TARGETS, build_tiny_model, make_tiny_adapter  # noqa: E402


def make_adapter(out: Path, *, seed: int) -> Path:
    """A random adapter on every linear layer of the tiny model (what a nightly run trains)."""
    return make_tiny_adapter(
        build_tiny_model(), out, seed=seed, scale=0.3, target_modules=ALL_TARGETS
    )


def test_published_gguf_artifact_is_fetched_verified_and_swapped(live_store, tmp_path: Path):
    adapter = make_adapter(tmp_path / "adapter", seed=3)
    gguf = gguf_artifact(adapter, tmp_path)
    assert gguf == tmp_path / "adapter.gguf" and gguf.is_file()
    with live_store.client(live_store.trainer_token) as trainer:
        out = trainer.upload_adapter(adapter, version="v1", base_model="tiny", gguf=gguf)
        assert sorted(a.kind for a in out.artifacts) == ["gguf", "peft"]
        trainer.publish_adapter("v1")

    backend = LlamaCppBackend(build_tiny_gguf(), n_threads=2)
    prompt = backend.prompt_ids("def add(a, b):\n")
    base = backend.engine.generate(prompt, max_tokens=4)
    logs: list[str] = []
    client = live_store.client()
    manager = AdapterManager(
        tmp_path / "cache",
        client=lambda: client,
        swap=lambda folder, version: timed(lambda: backend.load_adapter(folder, version)),
        announce=lambda swapped: None,
        log=lambda message, error: logs.append(message),
    )
    swapped = manager.check()
    assert swapped is not None and swapped.version == "v1", logs
    assert backend.adapter == "v1"
    assert backend.engine.adapter_path == tmp_path / "cache" / "v1.gguf"  # the artifact, as is
    adapted = backend.engine.generate(prompt, max_tokens=4)
    assert adapted.logprobs[0] != pytest.approx(base.logprobs[0], abs=1e-4)
    client.close()
    backend.close()


def test_peft_only_adapter_is_converted_on_the_spot(tmp_path: Path):
    adapter = make_adapter(tmp_path / "v2", seed=4)
    backend = LlamaCppBackend(build_tiny_gguf(), n_threads=2)
    backend.check_adapter(adapter)
    backend.load_adapter(adapter, "v2")
    assert backend.engine.adapter_path == adapter / "adapter.gguf"
    backend.unload_adapter()
    assert backend.adapter is None and backend.engine.adapter_path is None
    backend.close()


def test_an_unreadable_base_model_is_an_error_not_a_silent_skip(tmp_path: Path):
    adapter = make_adapter(tmp_path / "adapter", seed=5)
    config = (adapter / "adapter_config.json").read_text()
    (adapter / "adapter_config.json").write_text(
        config.replace('"base_model_name_or_path": "', '"base_model_name_or_path": "/nowhere/')
    )
    with pytest.raises(AdapterError, match="cannot read the config"):
        gguf_artifact(adapter, tmp_path)


def test_check_refuses_a_gguf_that_is_not_a_lora_for_this_model(tmp_path: Path):
    import shutil

    from crlhf_lsp.errors import AdapterMismatch

    backend = LlamaCppBackend(build_tiny_gguf(), n_threads=2)
    folder = tmp_path / "v9"
    folder.mkdir()
    shutil.copy(build_tiny_gguf(), folder / "adapter.gguf")  # a model, not an adapter
    with pytest.raises(AdapterMismatch):
        backend.check_adapter(folder)
    with pytest.raises(AdapterMismatch, match="neither"):
        backend.check_adapter(tmp_path)
    backend.close()
