"""GGUF → a plain transformers folder (safetensors + tokenizer), done once per file.

transformers reads a GGUF with ``gguf_file=`` and dequantises every tensor to torch (about a
minute for Gemma 3 270M); the model it returns still carries the GGUF quantization config,
so saving it as it is would make every later load go through the GGUF path again. Instead
we build a fresh model from the config without ``quantization_config``, load the
dequantised state dict into it and save that: later loads take seconds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["convert_gguf", "file_sha256", "save_dequantised"]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` into the folder ``out`` (config, safetensors, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    save_dequantised(loaded, tokenizer, out)


def save_dequantised(loaded: object, tokenizer: object, out: Path) -> None:
    """Save ``loaded``'s weights under its config minus the quantization config."""
    import torch
    from transformers import AutoModelForCausalLM

    config = loaded.config  # type: ignore[attr-defined]
    state = loaded.state_dict()  # type: ignore[attr-defined]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise ValueError(
            f"state dict does not fit the config: missing {missing}, extra {unexpected}"
        )
    model.tie_weights()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
