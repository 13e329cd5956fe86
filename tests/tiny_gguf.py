"""A tiny GGUF model, written by the tests themselves with the ``gguf`` package.

:func:`build_tiny_gguf` converts the tiny Llama of ``tests/tiny_model.py`` (2 layers, hidden
64, byte-level BPE with FIM tokens, trained on Python snippets) into ``tiny.gguf``: the same
weights in f32, the same tokenizer (``tokenizer.ggml.model = gpt2``, pre-tokenizer ``gpt-2``),
written with GGUFWriter and the ``gguf`` package's HF→GGUF tensor name map, q/k rows
permuted for llama.cpp's rotary layout. Cached next to the tiny model, built atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tiny_model import build_tiny_model

VERSION = "v1"
DEFAULT_DIR = Path(tempfile.gettempdir()) / f"crlhf-tiny-gguf-{VERSION}"


def build_tiny_gguf(folder: Path | None = None) -> Path:
    """The path of ``tiny.gguf`` (built once), converted from :func:`build_tiny_model`."""
    folder = Path(folder or os.environ.get("CRLHF_TINY_GGUF_DIR") or DEFAULT_DIR)
    path = folder / "tiny.gguf"
    if path.is_file():
        return path
    hf_dir = build_tiny_model()
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        hf_to_gguf(hf_dir, work / "tiny.gguf")
        with contextlib.suppress(OSError):  # atomic: a parallel builder that won keeps its own
            work.rename(folder)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return path


def hf_to_gguf(hf_dir: Path, path: Path) -> Path:
    """Write the Llama + byte-level BPE folder ``hf_dir`` as an f32 GGUF at ``path``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = json.loads((Path(hf_dir) / "tokenizer.json").read_text())
    vocab = dict(spec["model"]["vocab"])
    specials = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError(f"{hf_dir}: token ids are not 0..n-1")
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    config = AutoConfig.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    _write_gguf(Path(path), model, config, tokens, merges, specials)
    return Path(path)


def _write_gguf(path: Path, model, config, tokens, merges, specials: set[str]) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("crlhf-tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    head_dim = config.hidden_size // config.num_attention_heads
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    control, normal = gguf.TokenType.CONTROL, gguf.TokenType.NORMAL
    writer.add_token_types([control if t in specials else normal for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_add_bos_token(False)

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        data = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, config.num_key_value_heads)
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for {hf_name}")
        writer.add_tensor(name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def permute_qk(weights: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's ``LlamaModel.permute``: HF's half-split rotary → interleaved."""
    out = weights.shape[0]
    return (
        weights.reshape(heads, 2, out // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _rope_theta(config) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:  # transformers 5 keeps it in rope_parameters
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return float(theta)
