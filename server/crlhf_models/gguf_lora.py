"""A PEFT LoRA adapter converted to a GGUF LoRA adapter, for llama.cpp.

crlhf-lsp's ``llamacpp`` backend serves the base model as a GGUF file and applies the
adapter at run time (``llama_adapter_lora_init``), so the trainer publishes the same LoRA
twice: the PEFT files and one ``.gguf`` written here with the ``gguf`` package.

What llama.cpp expects (``src/llama-adapter.cpp``):

- ``general.architecture`` = the base model's, ``general.type = "adapter"``,
  ``adapter.type = "lora"``, ``adapter.lora.alpha``;
- per adapted weight ``W`` (GGUF name, e.g. ``blk.0.attn_q.weight``) two tensors
  ``W.lora_a`` with numpy shape ``(r, in)`` (= PEFT's ``lora_A``) and ``W.lora_b`` with
  ``(out, r)`` (= PEFT's ``lora_B``); GGUF reverses numpy shapes into ggml's ``ne``;
- it adds ``scale · B(A x)`` with ``scale = alpha / r``, ``r`` read from each tensor.

PEFT's scaling is ``lora_alpha / r`` (``lora_alpha / √r`` with rsLoRA, and per module
with ``rank_pattern``/``alpha_pattern``). Where a module's PEFT scaling differs from
``alpha / r_module`` the ratio is folded into its ``B``, so the product is the same.

Llama-family GGUFs store ``q``/``k`` rows permuted for llama.cpp's interleaved rotary
layout (``convert_hf_to_gguf.py``'s ``LlamaModel.permute``); ``B``'s rows get the same
permutation, since ``W + s·BA`` must map to the permuted ``W``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crlhf_models.errors import AdapterError

__all__ = ["GGUF_ARCHITECTURES", "LoraConversion", "convert_peft_to_gguf", "gguf_artifact"]

# transformers model_type -> llama.cpp architecture name (gguf.MODEL_ARCH_NAMES values).
GGUF_ARCHITECTURES: dict[str, str] = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "phi3": "phi3",
}
# Architectures whose GGUF q/k weights are row-permuted relative to the HF checkpoint.
_PERMUTED_QK = {"llama"}


@dataclass(frozen=True)
class LoraConversion:
    """What :func:`convert_peft_to_gguf` wrote."""

    path: Path
    architecture: str
    alpha: float
    tensors: int  # GGUF tensors written (two per adapted weight)


def convert_peft_to_gguf(
    adapter_dir: str | Path,
    out_path: str | Path,
    *,
    base_config: Any = None,
) -> LoraConversion:
    """Write the PEFT LoRA in ``adapter_dir`` as a GGUF LoRA adapter at ``out_path``.

    ``base_config`` is the base model's ``transformers`` config (object or dict); without it
    the config is loaded from the adapter's ``base_model_name_or_path`` (a hub id, a
    folder, or a ``.gguf`` file).
    """
    import gguf
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    lora_config, weights_file = _plain_lora(adapter_dir)
    config = _config_dict(base_config, lora_config, adapter_dir)
    arch_name = _gguf_architecture(config)
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name)
    n_layers = int(config["num_hidden_layers"])
    name_map = gguf.get_tensor_name_map(arch, n_layers)

    pairs = _lora_pairs(load_file(str(weights_file)), adapter_dir)
    alpha = float(lora_config.get("lora_alpha", 8))
    writer = gguf.GGUFWriter(str(out_path), arch_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    count = 0
    for module, (lora_a, lora_b) in sorted(pairs.items()):
        gguf_name = name_map.get_name(module + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise AdapterError(f"{adapter_dir}: no GGUF tensor for {module!r} ({arch_name})")
        rank = lora_a.shape[0]
        peft_scale = _peft_scaling(lora_config, module, rank)
        lora_b = lora_b.astype(np.float32) * np.float32(peft_scale / (alpha / rank))
        if arch_name in _PERMUTED_QK and module.endswith(("q_proj", "k_proj")):
            heads = config["num_attention_heads"]
            if module.endswith("k_proj"):
                heads = config.get("num_key_value_heads") or heads
            lora_b = _permute_rows(lora_b, heads)
        writer.add_tensor(gguf_name + ".lora_a", np.ascontiguousarray(lora_a, np.float32))
        writer.add_tensor(gguf_name + ".lora_b", np.ascontiguousarray(lora_b, np.float32))
        count += 2
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return LoraConversion(Path(out_path), arch_name, alpha, count)


def _plain_lora(adapter_dir: Path) -> tuple[dict[str, Any], Path]:
    """The adapter's LoRA config and safetensors file, refusing what has no GGUF form."""
    lora_config = _read_json(adapter_dir / "adapter_config.json")
    if lora_config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{adapter_dir}: peft_type {lora_config['peft_type']!r} is not LoRA")
    if lora_config.get("use_dora"):
        raise AdapterError(f"{adapter_dir}: DoRA adapters have no GGUF form; train plain LoRA")
    weights_file = adapter_dir / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise AdapterError(f"{adapter_dir}: no adapter_model.safetensors (pickles are not read)")
    return lora_config, weights_file


def _gguf_architecture(config: dict[str, Any]) -> str:
    """llama.cpp's architecture name for a transformers config's ``model_type``."""
    model_type = config.get("model_type", "")
    arch_name = GGUF_ARCHITECTURES.get(model_type)
    if arch_name is None:
        raise AdapterError(
            f"base model type {model_type!r} has no GGUF LoRA mapping here; "
            f"supported: {sorted(GGUF_ARCHITECTURES)}"
        )
    return arch_name


def gguf_artifact(adapter_dir: Path, out_dir: Path) -> Path | None:
    """The nightly job's hook (``NightlyConfig.gguf``): ``out_dir/adapter.gguf``, or ``None``
    when the gguf package is missing or the base model has no GGUF form (then the PEFT
    artifact is published alone). A conversion that fails raises, and nothing is published.
    """
    try:
        import gguf  # noqa: F401
    except ImportError:
        return None
    adapter_dir = Path(adapter_dir)
    config = _config_dict(None, _read_json(adapter_dir / "adapter_config.json"), adapter_dir)
    if config.get("model_type") not in GGUF_ARCHITECTURES:
        return None
    out = Path(out_dir) / "adapter.gguf"
    return convert_peft_to_gguf(adapter_dir, out, base_config=config).path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{path}: cannot read the adapter config: {exc}") from exc


def _config_dict(base_config: Any, lora_config: dict[str, Any], where: Path) -> dict[str, Any]:
    if base_config is None:
        source = lora_config.get("base_model_name_or_path")
        if not source:
            raise AdapterError(f"{where}: no base_model_name_or_path; pass base_config")
        try:
            base_config = _load_config(source)
        except Exception as exc:  # OSError, ValueError, crlhf_models.ModelError …
            raise AdapterError(
                f"{where}: cannot read the config of the base model {source!r} ({exc}); "
                "pass base_config"
            ) from exc
    config = base_config if isinstance(base_config, dict) else base_config.to_dict()
    # Multimodal wrappers keep the language model's settings in text_config.
    text = config.get("text_config")
    return text if isinstance(text, dict) and "num_hidden_layers" in text else config


def _load_config(source: str) -> Any:
    """The config of a base model setting: a folder, a ``.gguf``, a known name, a hub id."""
    from transformers import AutoConfig

    try:
        from crlhf_models import resolve_model
    except ImportError:
        path = Path(source).expanduser()
        if path.suffix == ".gguf":
            return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoConfig.from_pretrained(source)
    return AutoConfig.from_pretrained(resolve_model(source).path)


def _lora_pairs(tensors: dict[str, np.ndarray], where: Path) -> dict[str, tuple]:
    """``{hf_module: (A, B)}`` from PEFT's saved keys."""
    parts: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        name = key.removeprefix("base_model.model.")
        for side in ("A", "B"):
            marker = f".lora_{side}.weight"
            if name.endswith(marker):
                parts.setdefault(name.removesuffix(marker), {})[side] = value
                break
        else:
            raise AdapterError(
                f"{where}: tensor {key!r} is not a LoRA A/B matrix (modules_to_save, embeddings "
                "or DoRA cannot be applied by llama.cpp)"
            )
    missing = [m for m, ab in parts.items() if len(ab) != 2]
    if missing:
        raise AdapterError(f"{where}: LoRA modules missing A or B: {missing}")
    return {m: (ab["A"], ab["B"]) for m, ab in parts.items()}


def _peft_scaling(lora_config: dict[str, Any], module: str, rank: int) -> float:
    alpha = float(lora_config.get("lora_alpha", 8))
    for pattern, value in (lora_config.get("alpha_pattern") or {}).items():
        if module == pattern or module.endswith("." + pattern):
            alpha = float(value)
    root = math.sqrt(rank) if lora_config.get("use_rslora") else rank
    return alpha / root


def _permute_rows(b: np.ndarray, heads: int) -> np.ndarray:
    """``LlamaModel.permute`` of convert_hf_to_gguf.py, on the output rows of ``B``."""
    out, rank = b.shape
    return b.reshape(heads, 2, out // heads // 2, rank).swapaxes(1, 2).reshape(out, rank)
