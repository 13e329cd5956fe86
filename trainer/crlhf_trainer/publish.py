"""The gate and the upload: a candidate adapter reaches the editors only if it does no harm.

Every trained adapter is uploaded to the store's registry as a ``candidate`` (so a refused
one can still be inspected), with a model-card ``README.md`` and its metrics; it is
published only when :func:`gate` finds no gated metric (``…/pass@k``, ``heldout/reward``)
lower than the baseline's by more than ``margin``. The baseline is the adapter the editors
run now (the parent) or, for the first adapter, the base model, evaluated in the same run
on the same problems. ``parent`` links each adapter to the one it was trained from.

An adapter may carry a second artifact (a GGUF LoRA for llama.cpp, issue 9): pass its
file as ``gguf``; the registry stores it under the same version with its own sha256.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crlhf_contract.client import StoreClient, StoreError
from crlhf_contract.digest import folder_digest

from .errors import AdapterError, StoreGone, TrainConfigError

__all__ = [
    "GateDecision",
    "PublishResult",
    "gate",
    "gated_metrics",
    "new_version",
    "publish",
    "verify_adapter",
    "write_model_card",
]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class GateDecision:
    passed: bool
    margin: float
    regressions: list[str] = field(default_factory=list)  # "mbpp/pass@1 0.30 → 0.20"
    compared: dict[str, tuple[float, float]] = field(default_factory=dict)

    def reason(self) -> str:
        if self.passed:
            return (
                f"no regression beyond {self.margin:g} on {', '.join(self.compared) or 'nothing'}"
            )
        return "regressed: " + "; ".join(self.regressions)


def gated_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if "/pass@" in k or k == "heldout/reward"}


def gate(
    candidate: Mapping[str, Any], baseline: Mapping[str, Any], margin: float = 0.02
) -> GateDecision:
    """Refuse the candidate if any gated metric dropped by more than ``margin``.

    >>> gate({"mbpp/pass@1": 0.25}, {"mbpp/pass@1": 0.30}, margin=0.02).passed
    False
    >>> gate({"mbpp/pass@1": 0.29}, {"mbpp/pass@1": 0.30}, margin=0.02).passed
    True
    """
    if margin < 0:
        raise TrainConfigError(f"gate margin {margin} must be ≥ 0")
    cand, base = gated_metrics(candidate), gated_metrics(baseline)
    decision = GateDecision(passed=True, margin=margin)
    for name in sorted(cand.keys() & base.keys()):
        decision.compared[name] = (base[name], cand[name])
        if cand[name] < base[name] - margin:
            decision.passed = False
            decision.regressions.append(f"{name} {base[name]:.3f} → {cand[name]:.3f}")
    return decision


def verify_adapter(folder: Path) -> dict[str, Any]:
    """Check a PEFT adapter folder is complete and readable; returns its config."""
    from safetensors import safe_open

    folder = Path(folder)
    missing = [n for n in ADAPTER_FILES if not (folder / n).is_file()]
    if missing:
        raise AdapterError(f"adapter {folder} lacks {', '.join(missing)}; re-run the training")
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
            if not list(f.keys()):
                raise ValueError("no tensors")
    except (ValueError, OSError) as exc:
        raise AdapterError(f"adapter {folder} is corrupted ({exc}); re-run the training") from exc
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise AdapterError(f"adapter {folder} is corrupted ({exc}); re-run the training") from exc
    if not config.get("base_model_name_or_path"):
        raise AdapterError(f"adapter {folder}: adapter_config.json names no base model")
    return config


def new_version(folder: Path, now: datetime | None = None) -> str:
    """``v20261128-0530-1a2b3c``: UTC time, then the start of the folder digest."""
    now = now or datetime.now(UTC)
    return f"v{now:%Y%m%d-%H%M%S}-{folder_digest(folder)[:6]}"


def write_model_card(
    folder: Path,
    *,
    version: str,
    base_model: str,
    parent: str | None,
    metrics: Mapping[str, Any],
    baseline: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    rows = "\n".join(
        f"| {k} | {_fmt(v)} | {_fmt((baseline or {}).get(k))} |" for k, v in sorted(metrics.items())
    )
    train_rows = "\n".join(f"- {k}: {_fmt(v)}" for k, v in sorted((training or {}).items()))
    text = f"""---
base_model: {base_model}
library_name: peft
tags:
- crlhf
- lora
- code
---

# crlhf adapter {version}

A LoRA adapter for `{base_model}`, trained by crlhf-train from the per-line ratings of the
team's developers (crowd-sourced RLHF for code completion; rewards aggregated from
annotators of unequal reliability, no reward model).

- parent adapter: {parent or "none (trained from the base model)"}

## Evaluation

| metric | this adapter | baseline |
|---|---|---|
{rows}

## Training

{train_rows or "-"}

## Use

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "<this folder>")
```
"""
    path = Path(folder) / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass
class PublishResult:
    version: str
    status: str  # candidate | published
    sha256: str
    decision: GateDecision


def publish(
    client: StoreClient,
    folder: Path,
    *,
    version: str,
    base_model: str,
    parent: str | None,
    metrics: Mapping[str, Any],
    decision: GateDecision,
    gguf: Path | None = None,
) -> PublishResult:
    """Upload ``folder`` as a candidate; publish it if ``decision`` passed."""
    verify_adapter(folder)
    try:
        out = client.upload_adapter(
            Path(folder),
            version=version,
            base_model=base_model,
            parent=parent,
            metrics=dict(metrics) | {"gate": decision.reason()},
            gguf=gguf,
        )
        if decision.passed:
            out = client.publish_adapter(version)
    except StoreError as exc:
        raise StoreGone(
            f"the store failed while uploading adapter {version} ({exc}); it was not "
            f"published — re-run `crlhf-train publish --adapter {folder}` when it is back"
        ) from exc
    return PublishResult(
        version=out.version, status=out.status, sha256=out.sha256, decision=decision
    )
