"""Many completions of a GGUF model, with or without a trained adapter, by llama.cpp.

The benches sample held-out work many times per adapter; on 2 cores transformers took
32 s per MBPP problem for Gemma 3 270M's 4 samples (its 262k-token head runs on every
step), and about 10 tokens/s for greedy ghost text. llama.cpp, through crlhf-lsp's own
backend (the PEFT adapter becomes a GGUF LoRA as an editor's hot swap makes it), reads and
writes the same text several times faster. Sample ``seed`` of a prompt is the same draw
for the base and for every adapter, so differences between them are the adapters' own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["complete_all"]


def complete_all(
    gguf: Path,
    adapter: Path | None,
    jobs: Sequence[tuple[str, int]],
    *,
    max_tokens: int,
    temperature: float,
    stop: Callable[[int, str], bool] | None = None,
) -> list[str]:
    """The text of each ``(prompt, seed)`` job, in order; ``stop(job index, text so far)``
    ends a completion early (checked after each token)."""
    from crlhf_lsp.backends import GenerationRequest
    from crlhf_lsp.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(gguf, n_threads=max(1, len(os.sched_getaffinity(0))))
    try:
        if adapter is not None:
            backend.load_adapter(adapter, "candidate")
        out = []
        for i, (prompt, seed) in enumerate(jobs):
            request = GenerationRequest(
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                should_stop=(lambda text, i=i: stop(i, text)) if stop else None,
            )
            out.append(backend.generate(request, threading.Event()).text)
        return out
    finally:
        backend.close()
