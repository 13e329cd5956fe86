"""The gate and the upload: a candidate adapter reaches the editors only if it does no harm.

Every trained adapter is uploaded to the store's registry as a ``candidate`` (so a refused
one can still be inspected), with a model-card ``README.md`` and its metrics; it is
published only when :func:`crlhf_trainer.gate.gate` finds, item by item against the
baseline, no harm beyond each metric's margin with enough evidence to say so. The baseline
is the adapter the editors run now (the parent) or, for the first adapter, the base model,
evaluated in the same run on the same items. ``parent`` links each adapter to the one it
was trained from.

An adapter may carry a second artifact (a GGUF LoRA for llama.cpp, issue 9): pass its
file as ``gguf``; the registry stores it under the same version with its own sha256.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crlhf_contract.client import StoreClient, StoreError
from crlhf_contract.digest import folder_digest

from .errors import AdapterError, StoreGone
from .gate import GateDecision

__all__ = [
    "PublishResult",
    "new_version",
    "publish",
    "verify_adapter",
    "write_model_card",
]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


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


_MODEL_CARD = """---
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

- parent adapter: {parent}

## Evaluation

| metric | this adapter | baseline | Δ (90% paired interval, n) |
|---|---|---|---|
{rows}

{gate_text}

## Training

{train_rows}

## Use

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "<this folder>")
```
"""
"""The adapter folder's README.md (a Hugging Face model card), filled by write_model_card."""


def write_model_card(
    folder: Path,
    *,
    version: str,
    base_model: str,
    parent: str | None,
    metrics: Mapping[str, Any],
    baseline: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    decision: GateDecision | None = None,
) -> Path:
    checks = {c.name: c for c in decision.checks} if decision else {}
    rows = "\n".join(
        f"| {k} | {_fmt(v)} | {_fmt((baseline or {}).get(k))} | {_interval(checks.get(k))} |"
        for k, v in sorted(metrics.items())
        if not isinstance(v, Mapping)
    )
    gate_text = (
        f"**Gate: {decision.decision}.** {decision.reason()}" if decision else "Gate: not run."
    )
    train_rows = "\n".join(f"- {k}: {_fmt(v)}" for k, v in sorted((training or {}).items()))
    text = _MODEL_CARD.format(
        base_model=base_model,
        version=version,
        parent=parent or "none (trained from the base model)",
        rows=rows,
        gate_text=gate_text,
        train_rows=train_rows or "-",
    )
    path = Path(folder) / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def _interval(check: Any) -> str:
    if check is None:
        return "–"
    return f"{check.delta:+.3g} [{check.low:+.3g}, {check.high:+.3g}], n={check.n}"


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _flat(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics without their per-item values (those stay in the run's eval.json)."""
    return {k: v for k, v in metrics.items() if k != "items"}


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
    signing_key: Path | None = None,
) -> PublishResult:
    """Upload ``folder`` as a candidate; publish it if ``decision`` passed.

    Signed with the Ed25519 private key in ``signing_key`` (default: the file named by
    ``$CRLHF_SIGNING_KEY``; ``crlhf-train keygen`` makes one): editors whose
    ``adapterPublicKey`` is its public key load only adapters signed with it."""
    verify_adapter(folder)
    if signing_key is None and os.environ.get("CRLHF_SIGNING_KEY"):
        signing_key = Path(os.environ["CRLHF_SIGNING_KEY"])
    if signing_key is not None:
        from crlhf_contract.signing import SigningError, load_private_key

        try:
            load_private_key(Path(signing_key))  # a bad key fails here, before any upload
        except SigningError as exc:
            raise AdapterError(str(exc)) from exc
    try:
        out = client.upload_adapter(
            Path(folder),
            version=version,
            base_model=base_model,
            parent=parent,
            metrics=_flat(metrics)
            | {"gate": decision.reason(), "gate_decision": decision.to_json()},
            gguf=gguf,
            signing_key=signing_key,
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
