"""PEFT LoRA → GGUF LoRA, and its run-time swap in the llamacpp engine (tiny model).

The delta check: for the same token ids, the change the LoRA makes to the next-token
log-probs under llama.cpp (adapter on − off) must equal the change under transformers + peft
(adapter on − ``disable_adapter()``), over the whole vocabulary. On the tiny model both bases
are the same f32 weights, so:

- with an f32 KV cache the two agree to float rounding: tolerance 1e-4 nats (measured
  ≤ 1e-5 for deltas of 3–8 nats), which pins the conversion itself (names, A/B layout,
  q/k row permutation, rsLoRA and per-module rank folding);
- with llama.cpp's default f16 KV cache (what crlhf-lsp runs), keys and values are rounded
  to 11 significant bits, about 5e-4 relative, which moves log-probs by up to ~1e-2 nats
  for these deliberately strong adapters: tolerance 0.02 nats.

(On the quantised default model the tolerance follows the bases' own gap; see
tests/lsp/test_llamacpp_default_model.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

from crlhf_lsp.backends.llamacpp_engine import LlamaCppEngine, LlamaCppError  # noqa: E402
from crlhf_models.errors import AdapterError  # noqa: E402
from crlhf_models.gguf_lora import convert_peft_to_gguf  # noqa: E402
from tiny_gguf import build_tiny_gguf  # noqa: E402
from tiny_model import ALL_TARGETS, build_tiny_model, make_tiny_adapter  # noqa: E402

TARGETS = ALL_TARGETS
DELTA_TOLERANCE = 1e-4  # f32 KV cache
F16_KV_TOLERANCE = 0.02  # llama.cpp's default f16 KV cache
PROMPTS = [
    "def fib(n):\n    if n < 2:\n        return n\n",
    "class Point:\n\tdef __init__(self, x, y):\r\n",
    "# grüße 🙂\nfor i in range(10):\n    print(",
]


def make_adapter(out: Path, *, seed: int, **lora) -> Path:
    """A strong random adapter on every linear layer (×0.3), ``lora`` overriding the config."""
    return make_tiny_adapter(
        build_tiny_model(), out, seed=seed, scale=0.3, **({"target_modules": TARGETS} | lora)
    )


@pytest.fixture(scope="module")
def engine():
    engine = LlamaCppEngine(build_tiny_gguf(), n_ctx=1024, n_threads=2)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def exact_engine():
    engine = LlamaCppEngine(build_tiny_gguf(), n_ctx=1024, n_threads=2, kv_f32=True)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    plain = make_adapter(root / "plain", seed=1)
    rslora = make_adapter(
        root / "rslora", seed=2, r=8, lora_alpha=4, use_rslora=True, rank_pattern={"v_proj": 2}
    )
    return {"plain": plain, "rslora": rslora}


def peft_deltas(adapter_dir: Path, prompts: list[list[int]]) -> list[np.ndarray]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(build_tiny_model())
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            on = torch.log_softmax(model(x).logits[0, -1].double(), -1)
            with model.disable_adapter():
                off = torch.log_softmax(model(x).logits[0, -1].double(), -1)
            out.append((on - off).numpy())
    return out


def test_gguf_lora_metadata_and_tensors(adapters, tmp_path):
    out = tmp_path / "plain.gguf"
    info = convert_peft_to_gguf(adapters["plain"], out)
    assert info.architecture == "llama" and info.alpha == 8.0
    reader = gguf.GGUFReader(str(out))

    def field(key):
        f = reader.fields[key]
        return f.contents()

    assert field("general.architecture") == "llama"
    assert field("general.type") == "adapter"
    assert field("adapter.type") == "lora"
    assert field("adapter.lora.alpha") == pytest.approx(8.0)
    names = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    assert len(names) == info.tensors == 2 * len(TARGETS) * 2  # A and B, 7 modules, 2 layers
    # ggml's ne order: lora_a is (in, r), lora_b is (r, out); q is 64 → 64, gate 64 → 128.
    assert names["blk.0.attn_q.weight.lora_a"] == (64, 4)
    assert names["blk.0.attn_q.weight.lora_b"] == (4, 64)
    assert names["blk.1.ffn_gate.weight.lora_b"] == (4, 128)
    assert names["blk.1.ffn_down.weight.lora_a"] == (128, 4)


def lora_deltas(engine: LlamaCppEngine, gguf_path: Path, prompts) -> list[np.ndarray]:
    engine.set_adapter(None)
    base = [engine.next_token_logprobs(ids) for ids in prompts]
    engine.set_adapter(gguf_path)
    try:
        return [engine.next_token_logprobs(ids) - b for ids, b in zip(prompts, base, strict=True)]
    finally:
        engine.set_adapter(None)


@pytest.mark.parametrize("kind", ["plain", "rslora"])
def test_delta_check_llamacpp_matches_peft(engine, exact_engine, adapters, tmp_path, kind):
    gguf_path = convert_peft_to_gguf(adapters[kind], tmp_path / f"{kind}.gguf").path
    prompts = [engine.tokenize(p) for p in PROMPTS]
    expected = peft_deltas(adapters[kind], prompts)
    exact = lora_deltas(exact_engine, gguf_path, prompts)
    served = lora_deltas(engine, gguf_path, prompts)
    for want, got, got_f16 in zip(expected, exact, served, strict=True):
        assert np.abs(want).max() > 0.5  # the LoRA really changes the distribution
        np.testing.assert_allclose(got, want, atol=DELTA_TOLERANCE)
        np.testing.assert_allclose(got_f16, want, atol=F16_KV_TOLERANCE)


def test_swap_at_run_time_rolls_back_and_returns_to_base(engine, adapters, tmp_path):
    path = convert_peft_to_gguf(adapters["plain"], tmp_path / "a.gguf").path
    ids = engine.tokenize(PROMPTS[0])
    engine.set_adapter(None)
    base = engine.generate(ids, max_tokens=6)
    seconds = engine.set_adapter(path)
    assert seconds < 1.0  # the benchmark measures it against 100 ms on the default model
    adapted = engine.generate(ids, max_tokens=6)
    assert adapted.reused_tokens == 0  # a swap drops the KV cache computed under the old one
    assert not np.allclose(adapted.logprobs[:1], base.logprobs[:1], atol=1e-3)

    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf")
    with pytest.raises(LlamaCppError, match="refused"):
        engine.set_adapter(garbage)
    with pytest.raises(LlamaCppError, match="no GGUF LoRA"):
        engine.set_adapter(tmp_path / "missing.gguf")
    assert engine.adapter_path == path  # rolled back: still the previous adapter
    again = engine.generate(ids, max_tokens=6)
    assert again.token_ids == adapted.token_ids
    np.testing.assert_allclose(again.logprobs, adapted.logprobs, atol=1e-5)

    engine.set_adapter(None)
    back = engine.generate(ids, max_tokens=6)
    assert back.token_ids == base.token_ids
    np.testing.assert_allclose(back.logprobs, base.logprobs, atol=1e-5)


def test_conversion_refuses_what_llama_cpp_cannot_apply(adapters, tmp_path):
    import shutil

    dora = tmp_path / "dora"
    shutil.copytree(adapters["plain"], dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps(config | {"use_dora": True}))
    with pytest.raises(AdapterError, match="DoRA"):
        convert_peft_to_gguf(dora, tmp_path / "x.gguf")
    (dora / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": ""}))
    with pytest.raises(AdapterError, match="base_config"):
        convert_peft_to_gguf(dora, tmp_path / "x.gguf")
    t5 = {"model_type": "t5"}
    with pytest.raises(AdapterError, match="no GGUF LoRA mapping"):
        convert_peft_to_gguf(adapters["plain"], tmp_path / "x.gguf", base_config=t5)
