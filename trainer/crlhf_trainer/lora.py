"""The LoRA policy outside the training loop: the device it runs on, loading it (a fresh
adapter, or a published one to continue from, from safetensors only), saving it as
standard PEFT files, and the memory it took. Our loop (:mod:`crlhf_trainer.train`), TRL's
(``grpo``, ``kto``) and the evaluation share them.
"""

from __future__ import annotations

import json
import random
import resource
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import AdapterError, TrainConfigError

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = [
    "PICKLE_SUFFIXES",
    "load_policy",
    "peak_memory_mb",
    "resolve_device",
    "save_adapter",
    "seed_everything",
]


def resolve_device(setting: str) -> torch.device:
    """The one place a device setting (auto | cpu | cuda) becomes a torch device."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise TrainConfigError("device cuda asked for, but torch sees no GPU; use --device cpu")
    if setting == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _dtype(device: torch.device, mixed_precision: str) -> torch.dtype:
    # LoRA trains in fp32 on a CPU (bf16 matmuls there are slow and lossy); on a GPU the
    # frozen base can sit in bf16 while the adapter's own weights stay fp32 (peft).
    if device.type == "cuda" and mixed_precision == "bf16":
        return torch.bfloat16
    return torch.float32


def load_policy(
    model: str,
    config: TrainConfig,
    *,
    adapter: Path | None = None,
    device: torch.device | None = None,
    trainable: bool = True,
):
    """The base model with a LoRA adapter: a fresh one, or ``adapter`` to continue from."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    device = device or torch.device("cpu")
    base = AutoModelForCausalLM.from_pretrained(model, dtype=_dtype(device, config.mixed_precision))
    if adapter is not None:
        _safetensors_only(Path(adapter))
        try:
            policy = PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
        except Exception as exc:  # peft raises ValueError, OSError, safetensors errors …
            raise AdapterError(f"adapter {adapter} cannot be loaded on {model}: {exc}") from exc
    else:
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.target_modules,
            task_type="CAUSAL_LM",
        )
        policy = get_peft_model(base, lora)
    return policy.to(device)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def _safetensors_only(folder: Path) -> None:
    """Refuse an adapter that could make peft fall back to ``torch.load`` (pickle: code)."""
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles or not (folder / "adapter_model.safetensors").is_file():
        what = ", ".join(pickles) or "no adapter_model.safetensors"
        raise AdapterError(
            f"adapter {folder}: {what}; crlhf loads adapter weights from safetensors only "
            "(a pickle can run code): re-save it with save_pretrained(safe_serialization=True)"
        )


def save_adapter(policy, out_dir: Path, base_model: str) -> Path:
    """Standard PEFT files, with ``base_model_name_or_path`` naming the real base."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(str(out_dir))
    cfg_path = out_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base_model
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out_dir
