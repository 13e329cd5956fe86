"""llama.cpp itself: one GGUF model in one context (llama-cpp-python), GGUF LoRA swaps.

What :class:`~crlhf_lsp.backends.llamacpp.LlamaCppBackend` stands on, and what tests and
benchmarks drive directly:

- the KV cache holds the last request's tokens; a new prompt re-uses its longest common
  token prefix and evaluates only the rest (typing one more character costs a few tokens);
- cancellation is checked between prefill chunks and between generated tokens;
- prompt token ids, generated token ids and each generated token's log-probability under
  the model (log-softmax of the raw logits, whatever the sampling temperature) are
  returned, so the trainer can use them as the behaviour policy's log-probs;
- the adapter is a GGUF LoRA (``crlhf_models.gguf_lora``) loaded with
  ``llama_adapter_lora_init`` and set with ``llama_set_adapters_lora`` between generations
  (one lock guards the context); a file llama.cpp refuses leaves the previous adapter in
  place. A swap drops the KV cache: keys and values computed under the old adapter are stale.

One context serves one request at a time; llama.cpp's logs go to stderr, never to stdout
(where the LSP speaks).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crlhf_lsp.backends.llamacpp_log import install_log_callback
from crlhf_lsp.backends.spare_cores import SpareCores

__all__ = [
    "BACKGROUND_CHUNK",
    "PREFILL_CHUNK",
    "LlamaCppEngine",
    "LlamaCppError",
    "LlamaCppGeneration",
    "default_threads",
    "longest_common_prefix",
]

PREFILL_CHUNK = 256
"""Tokens per decode call during prefill: the cancellation granularity (~0.5 s on 2 cores).
Measured on the default model, 1,000 tokens, 2 threads: 128-token chunks cost 6-8 % more
than 256 or 512 (which are equal), so 256 keeps cancellation twice as fine as 512 for free."""
BACKGROUND_CHUNK = 64
"""Tokens per decode call of a prefill nobody waits for (a warm-up on open or save, a whole
prompt read at a pause): the next request stops it within ~0.1 s of work rather than ~0.5 s,
for some 10-15 % more time spent on work done while the user reads or types."""


class LlamaCppError(RuntimeError):
    """llama.cpp refused a model or an adapter; the message names the file and the fix."""


@dataclass
class LlamaCppGeneration:
    prompt_token_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    text: str
    cancelled: bool = False
    finish_reason: str = "length"  # "length" | "stop" | "eos" | "cancelled"
    reused_tokens: int = 0  # prompt tokens served from the KV cache
    timings: dict[str, float] = field(default_factory=dict)


def default_threads() -> int:
    """One core left to the rest of the machine (at most 8 threads). llama.cpp's threads
    wait for each other at every layer, so one that another process holds off its core
    stalls them all: on a 2-core machine at load ~3.5 (the editor, a browser, tests), the
    default model took 24-47 s at a new position in a 600-line file with 2 threads, 1.1-6 s
    with 1 (``bench/lsp_latency.py --replay --backend llamacpp --new-positions``)."""
    return max(1, min((os.cpu_count() or 1) - 1, 8))


def longest_common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaCppEngine:
    """A GGUF model in one llama.cpp context; thread-safe by one lock.

    ``LlamaCppEngine("model.gguf").generate(engine.tokenize("def f("), max_tokens=16)``
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        kv_f32: bool = False,
        batch_threads: int | str = "auto",
        spare_cores: SpareCores | None = None,
    ) -> None:
        """``batch_threads``: the threads that read a prompt somebody waits for; ``"auto"``
        every core when the rest of the machine leaves them free, else ``n_threads``, as
        ``spare_cores`` (default: this machine's ``/proc/stat``) tells
        (:mod:`crlhf_lsp.backends.spare_cores`)."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise LlamaCppError(
                "the llamacpp backend needs llama-cpp-python: pip install 'crlhf[lsp]'"
            ) from exc
        path = Path(model_path)
        if not path.is_file():
            raise LlamaCppError(f"no GGUF model at {path}")
        install_log_callback()  # after llama_cpp's import, which installs its own
        threads = n_threads or default_threads()
        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                logits_all=False,
                verbose=False,
                # llama.cpp's default f16 KV cache rounds keys/values (~5e-4 relative); f32
                # is for exact comparisons with transformers.
                **({"type_k": 0, "type_v": 0} if kv_f32 else {}),
            )
        except (ValueError, RuntimeError) as exc:
            raise LlamaCppError(f"llama.cpp cannot load {path}: {exc}") from exc
        import llama_cpp

        self._lib = llama_cpp
        self.model_path = path
        self.n_ctx = self._llm.n_ctx()
        self.n_vocab = self._llm.n_vocab()
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.architecture = self._llm.metadata.get("general.architecture", "")
        self._lock = threading.Lock()
        self.threads = threads
        self._spare = (spare_cores or SpareCores()) if batch_threads == "auto" else None
        self._fixed_batch = threads if batch_threads == "auto" else int(batch_threads)
        self.batch_threads = threads  # what the context reads prompts with now
        self._set_threads(self._fixed_batch)
        self._rng = np.random.default_rng(seed)
        self._adapter = None  # llama_adapter_lora_p currently set, or None
        self._scale = 1.0
        self.adapter_path: Path | None = None

    # --- tokens -----------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        """Token ids of ``text``; ``special`` parses control tokens such as FIM markers."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def token_id(self, piece: str) -> int | None:
        """The id of a control token spelled ``piece`` (e.g. ``<|fim_prefix|>``), if any."""
        ids = self.tokenize(piece, special=True)
        return ids[0] if len(ids) == 1 else None

    # --- generation ---------------------------------------------------------------------

    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Callable[[str], bool] | None = None,
        cancelled: Callable[[], bool] | None = None,
        seed: int | None = None,
    ) -> LlamaCppGeneration:
        """Greedy (``temperature == 0``) or sampled continuation of ``prompt_ids``.

        ``stop(text_so_far)`` ends generation when true (after that token);
        ``cancelled()`` is polled between prefill chunks and between tokens. ``seed``
        (with the prompt's length) reseeds the sampler, as the local backend does, so the
        same prompt and seed give the same sample; None continues the engine's stream.
        """
        prompt = list(prompt_ids)
        if not prompt:
            raise LlamaCppError("empty prompt: at least one token is needed")
        if len(prompt) + max_tokens > self.n_ctx:
            keep = max(1, self.n_ctx - max_tokens)
            prompt = prompt[-keep:]
        is_cancelled = cancelled or (lambda: False)
        with self._lock:
            if seed is not None:
                self._rng = np.random.default_rng([seed, len(prompt)])
            t0 = time.perf_counter()
            self._set_threads(
                self._spare.threads(self.threads) if self._spare else self._fixed_batch
            )
            reused = self._prefill(prompt, is_cancelled)
            t1 = time.perf_counter()
            result = LlamaCppGeneration(prompt, [], [], "", reused_tokens=max(reused, 0))
            if reused < 0:
                result.cancelled, result.finish_reason = True, "cancelled"
                return result
            self._decode_loop(result, max_tokens, temperature, top_p, stop, is_cancelled)
            t2 = time.perf_counter()
        result.timings = {
            "prefill_s": t1 - t0,
            "decode_s": t2 - t1,
            "batch_threads": float(self.batch_threads),
        }
        return result

    def cached_prefix(self, prompt_ids: Sequence[int]) -> int:
        """How many leading ``prompt_ids`` the KV cache holds."""
        llm = self._llm
        return longest_common_prefix(llm.input_ids[: llm.n_tokens], list(prompt_ids))

    def prefill(
        self, prompt_ids: Sequence[int], *, cancelled: Callable[[], bool] | None = None
    ) -> bool:
        """Read ``prompt_ids`` into the KV cache, generating nothing, in chunks of
        :data:`BACKGROUND_CHUNK`; False if cancelled (the chunks read by then stay)."""
        prompt = list(prompt_ids)[-max(1, self.n_ctx - 1) :]
        with self._lock:
            self._set_threads(self.threads)  # work nobody waits for takes no spare core
            return self._prefill(prompt, cancelled or (lambda: False), BACKGROUND_CHUNK) >= 0

    def _set_threads(self, batch: int) -> None:
        if batch != self.batch_threads:
            self._lib.llama_set_n_threads(self._llm.ctx, self.threads, batch)
            self.batch_threads = batch

    def _prefill(
        self, prompt: list[int], cancelled: Callable[[], bool], chunk: int = PREFILL_CHUNK
    ) -> int:
        """Evaluate what the KV cache lacks of ``prompt``; the reused count, or -1 if cancelled.

        At least the last prompt token is always evaluated, so fresh logits exist for it.
        """
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens]
        reuse = min(longest_common_prefix(cached, prompt), len(prompt) - 1)
        llm.n_tokens = reuse  # Llama.eval drops the KV cells from n_tokens on
        for start in range(reuse, len(prompt), chunk):
            if cancelled():
                return -1
            llm.eval(prompt[start : start + chunk])
        return reuse

    def _decode_loop(self, result, max_tokens, temperature, top_p, stop, cancelled) -> None:
        # The newest token is evaluated only when another one is wanted, so after any return
        # the KV cache (and Llama.input_ids) hold the prompt and all but the last token.
        pieces = bytearray()
        for step in range(max_tokens):
            if cancelled():
                result.cancelled, result.finish_reason = True, "cancelled"
                return
            if step:
                self._llm.eval([result.token_ids[-1]])
            logits = self._last_logits()
            token = self._choose(logits, temperature, top_p)
            if self._ends(token):
                result.finish_reason = "eos"
                return
            result.token_ids.append(token)
            result.logprobs.append(float(logits[token]) - _logsumexp(logits))
            pieces += self._llm.detokenize([token])
            result.text = pieces.decode("utf-8", errors="ignore")
            if stop is not None and stop(result.text):
                result.finish_reason = "stop"
                return

    def _ends(self, token: int) -> bool:
        """End of generation, or any other control token (``<|fim_middle|>``,
        ``<|im_start|>``, …): detokenized without special tokens they would leave no trace
        in the text for the post-processing to cut at, and what follows is not the code."""
        lib = self._lib
        return bool(lib.llama_vocab_is_eog(self._vocab, token)) or bool(
            lib.llama_vocab_is_control(self._vocab, token)
        )

    def _last_logits(self) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def _choose(self, logits: np.ndarray, temperature: float, top_p: float) -> int:
        if temperature <= 0:
            return int(np.argmax(logits))
        probs = np.exp(_log_softmax(logits.astype(np.float64) / temperature))
        if top_p < 1.0:
            order = np.argsort(-probs)
            keep = order[: int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask
        # The log-softmax sums in float32: over a 152k vocabulary its probabilities can miss
        # 1 by more than numpy's choice() tolerates (Qwen2.5-Coder at T = 0.8 did).
        return int(self._rng.choice(len(probs), p=probs / probs.sum()))

    def reset(self) -> None:
        """Forget the KV cache (the next request is evaluated cold)."""
        with self._lock:
            self._llm.n_tokens = 0

    def next_token_logprobs(self, prompt_ids: Sequence[int]) -> np.ndarray:
        """Log-probs over the vocabulary after ``prompt_ids`` (for checks and evaluation)."""
        with self._lock:
            self._prefill(list(prompt_ids), lambda: False)
            return _log_softmax(self._last_logits().astype(np.float64))

    # --- adapters -----------------------------------------------------------------------

    def set_adapter(self, path: str | Path | None, *, scale: float = 1.0) -> float:
        """Apply the GGUF LoRA at ``path`` (``None``: the base model); seconds it took.

        The file is loaded outside the lock, so a running generation is not held up; the
        switch itself happens between generations. On any failure the previous adapter
        stays in place and :class:`LlamaCppError` says why.
        """
        t0 = time.perf_counter()
        lib = self._lib
        new = None
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise LlamaCppError(f"no GGUF LoRA adapter at {path}")
            new = lib.llama_adapter_lora_init(self._llm.model, str(path).encode())
            if not new:
                raise LlamaCppError(
                    f"llama.cpp refused the adapter {path}: not a GGUF LoRA for this base model "
                    f"({self.architecture}, {self.model_path.name}); reconvert it with "
                    "crlhf_models.gguf_lora against this base"
                )
        with self._lock:
            rc = self._apply(new, scale)
            if rc != 0:
                self._restore_adapter()
                if new is not None:
                    lib.llama_adapter_lora_free(new)
                raise LlamaCppError(f"llama_set_adapters_lora failed ({rc}) for {path}")
            old, self._adapter, self.adapter_path = self._adapter, new, path
            self._scale = scale
            self._llm.n_tokens = 0  # the cached keys/values were computed under the old adapter
            if old is not None:
                lib.llama_adapter_lora_free(old)
        return time.perf_counter() - t0

    def _apply(self, adapter, scale: float) -> int:
        """Make ``adapter`` (or none) the context's only LoRA; llama.cpp's return code."""
        lib, ctx = self._lib, self._llm.ctx
        if hasattr(lib, "llama_set_adapters_lora"):  # llama-cpp-python ≥ 0.3.3x
            if adapter is None:
                return lib.llama_set_adapters_lora(ctx, None, 0, None)
            adapters = (lib.llama_adapter_lora_p_ctypes * 1)(adapter)
            return lib.llama_set_adapters_lora(ctx, adapters, 1, (ctypes.c_float * 1)(scale))
        lib.llama_clear_adapter_lora(ctx)  # older: one call per adapter
        return 0 if adapter is None else lib.llama_set_adapter_lora(ctx, adapter, scale)

    def _restore_adapter(self) -> None:
        self._apply(self._adapter, self._scale)

    def close(self) -> None:
        with self._lock:
            self._llm.close()


def _logsumexp(logits: np.ndarray) -> float:
    # Shift by the max so exp() cannot overflow; float32 exp over a 262k vocabulary costs
    # ~0.3 ms a token, a few per cent of a decode step. The sum is accumulated pairwise.
    top = float(logits.max())
    return top + math.log(float(np.exp(logits - top, dtype=np.float32).sum(dtype=np.float64)))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return logits - _logsumexp(logits)
