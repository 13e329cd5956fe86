"""The llamacpp backend on the real default model (Gemma 3 270M, Q4_K_M GGUF): slower.

Token ids against the transformers tokenizer built from the same GGUF, and the delta check
for a (briefly) trained LoRA: the change it makes to the next-token log-probs under llama.cpp
must match the change under transformers + peft.

Tolerance of the delta check. transformers runs the GGUF's weights dequantised to fp32;
llama.cpp runs them quantised (Q4_K_M) and quantises the activations too (Q8_K dot products),
so the two *bases* already disagree: on each prompt's top-32 tokens by up to ~0.3–0.45 nats
(measured). The deltas are differences of two runs that each carry such an error:
|Δ_llama.cpp − Δ_peft| = |(a_l − a_p) − (b_l − b_p)| ≤ |a_l − a_p| + |b_l − b_p| ≈ 2 × the
bases' gap. So the check is, on those tokens, error ≤ max(DELTA_FLOOR, 2 × base gap), and
the LoRA must move the log-probs by more than twice that tolerance. Measured (one AdamW step,
lr 1e-2, r=8): base gap 0.31 / 0.45, delta error 0.30 / 0.51, LoRA effect 8.1 / 3.9 nats.
(On the f32 tiny model the same conversion agrees to 1e-5: tests/models/test_gguf_lora.py.)
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from crlhf_lsp.backends.llamacpp_engine import LlamaCppEngine  # noqa: E402
from crlhf_models.gguf_lora import convert_peft_to_gguf  # noqa: E402

DELTA_FLOOR = 0.05
BASE_GAP_FACTOR = 2.0
TOP_K = 32


@pytest.fixture(scope="module")
def ref():
    models = pytest.importorskip("crlhf_models")
    try:
        return models.resolve_model("gemma3-270m")
    except models.ModelNotInstalled as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def engine(ref):
    engine = LlamaCppEngine(ref.gguf, n_ctx=2048, n_threads=2)
    yield engine
    engine.close()


def real_code() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    source = (stdlib / "json" / "decoder.py").read_text(encoding="utf-8")
    return [
        source[:3000],
        source[:3000].replace("\n", "\r\n"),
        source[:2000].replace("    ", "\t"),
        "# Grüße aus Köln — naïve café 日本語 🙂\ndef größe(x):\n\treturn x  # ça va\r\n",
        "<start_of_turn>user\n  leading  and trailing \t\n\n\n",
    ]


def test_token_ids_equal_the_transformers_tokenizer_from_the_same_gguf(engine, ref):
    from transformers import AutoTokenizer

    # crlhf_models built this tokenizer with AutoTokenizer.from_pretrained(gguf_file=...) from
    # this very GGUF and saved it next to the dequantised weights.
    hf = AutoTokenizer.from_pretrained(ref.path)
    assert engine.add_bos
    for text in real_code():
        want = hf(text).input_ids  # BOS first, control tokens parsed, as the LSP prompts
        assert engine.tokenize(text, add_bos=True, special=True) == want, text[:50]
        plain = hf(text, add_special_tokens=False, split_special_tokens=True).input_ids
        assert engine.tokenize(text) == plain, text[:50]


def test_generation_reuses_the_prefix_on_the_real_model(engine):
    prompt = engine.tokenize(real_code()[0], add_bos=True)[:300]
    first = engine.generate(prompt, max_tokens=8)
    assert len(first.token_ids) == len(first.logprobs) > 0
    assert all(lp <= 0 for lp in first.logprobs)
    typed = prompt + first.token_ids[:2]
    second = engine.generate(typed, max_tokens=8)
    assert second.reused_tokens >= len(prompt)
    assert second.token_ids[: len(first.token_ids) - 2] == first.token_ids[2:]


def trained_adapter(model, ids: list[int], out: Path):
    """A LoRA trained for a few steps to make ``ids`` likelier (a real, small update)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]
    )
    peft = get_peft_model(model, config)
    # One AdamW step moves every LoRA weight by ~lr: a real gradient update, cheap on a CPU.
    optim = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-2)
    x = torch.tensor([ids])
    for _ in range(1):
        loss = peft(input_ids=x, labels=x).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    peft.save_pretrained(out)
    return peft.eval()


def test_lora_delta_under_llamacpp_matches_transformers_peft(engine, ref, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32).eval()
    code = real_code()
    train_ids = engine.tokenize(code[0], add_bos=True)[:32]
    peft = trained_adapter(model, train_ids, tmp_path / "adapter")
    gguf_path = convert_peft_to_gguf(
        tmp_path / "adapter", tmp_path / "adapter.gguf", base_config=model.config
    ).path
    prompts = [engine.tokenize(text, add_bos=True)[:64] for text in (code[0][1500:], code[3])]

    hf_base, hf_adapted = [], []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            hf_adapted.append(torch.log_softmax(peft(input_ids=x).logits[0, -1].double(), -1))
            with peft.disable_adapter():
                hf_base.append(torch.log_softmax(peft(input_ids=x).logits[0, -1].double(), -1))
    engine.set_adapter(None)
    lc_base = [engine.next_token_logprobs(ids) for ids in prompts]
    engine.set_adapter(gguf_path)
    try:
        lc_adapted = [engine.next_token_logprobs(ids) for ids in prompts]
    finally:
        engine.set_adapter(None)

    for hb, ha, lb, la in zip(hf_base, hf_adapted, lc_base, lc_adapted, strict=True):
        hb, ha = hb.numpy(), ha.numpy()
        top = np.argsort(-hb)[:TOP_K]
        base_gap = float(np.abs(lb[top] - hb[top]).max())
        tolerance = max(DELTA_FLOOR, BASE_GAP_FACTOR * base_gap)
        d_peft, d_llama = (ha - hb)[top], (la - lb)[top]
        error = float(np.abs(d_llama - d_peft).max())
        effect = float(np.abs(d_peft).max())
        print(f"base gap {base_gap:.4f}  delta error {error:.4f}  LoRA effect {effect:.4f}")
        assert effect > 2 * tolerance, "the adapter must change the distribution measurably"
        assert error <= tolerance
