"""The ``llamacpp`` backend: a GGUF model on llama.cpp (llama-cpp-python), GGUF LoRA adapters.

On a laptop CPU llama.cpp reads the context ~3× and writes the suggestion ~6× faster than
transformers, which is the difference between ghost text and none. The contract is the one
of the other backends:

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
from typing import TYPE_CHECKING

import numpy as np

from crlhf_lsp.backends.base import Backend, Generation, GenerationRequest
from crlhf_lsp.errors import AdapterError, AdapterMismatch, BackendError
from crlhf_lsp.prompt import FIM_FAMILIES, detect_fim_tokens

if TYPE_CHECKING:
    from crlhf_lsp.settings import Settings

__all__ = [
    "LlamaCppBackend",
    "LlamaCppEngine",
    "LlamaCppError",
    "LlamaCppGeneration",
    "from_settings",
    "gguf_model",
    "longest_common_prefix",
    "resolve_gguf",
]

PREFILL_CHUNK = 256
"""Tokens per decode call during prefill: the cancellation granularity (~0.5 s on 2 cores).
Measured on the default model, 1,000 tokens, 2 threads: 128-token chunks cost 6-8 % more
than 256 or 512 (which are equal), so 256 keeps cancellation twice as fine as 512 for free."""


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
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise LlamaCppError(
                "the llamacpp backend needs llama-cpp-python: pip install 'crlhf[lsp]'"
            ) from exc
        path = Path(model_path)
        if not path.is_file():
            raise LlamaCppError(f"no GGUF model at {path}")
        threads = n_threads or max(1, min(os.cpu_count() or 1, 8))
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
    ) -> LlamaCppGeneration:
        """Greedy (``temperature == 0``) or sampled continuation of ``prompt_ids``.

        ``stop(text_so_far)`` ends generation when true (after that token);
        ``cancelled()`` is polled between prefill chunks and between tokens.
        """
        prompt = list(prompt_ids)
        if not prompt:
            raise LlamaCppError("empty prompt: at least one token is needed")
        if len(prompt) + max_tokens > self.n_ctx:
            keep = max(1, self.n_ctx - max_tokens)
            prompt = prompt[-keep:]
        is_cancelled = cancelled or (lambda: False)
        with self._lock:
            t0 = time.perf_counter()
            reused = self._prefill(prompt, is_cancelled)
            t1 = time.perf_counter()
            result = LlamaCppGeneration(prompt, [], [], "", reused_tokens=max(reused, 0))
            if reused < 0:
                result.cancelled, result.finish_reason = True, "cancelled"
                return result
            self._decode_loop(result, max_tokens, temperature, top_p, stop, is_cancelled)
            t2 = time.perf_counter()
        result.timings = {"prefill_s": t1 - t0, "decode_s": t2 - t1}
        return result

    def _prefill(self, prompt: list[int], cancelled: Callable[[], bool]) -> int:
        """Evaluate what the KV cache lacks of ``prompt``; the reused count, or -1 if cancelled.

        At least the last prompt token is always evaluated, so fresh logits exist for it.
        """
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens]
        reuse = min(longest_common_prefix(cached, prompt), len(prompt) - 1)
        llm.n_tokens = reuse  # Llama.eval drops the KV cells from n_tokens on
        for start in range(reuse, len(prompt), PREFILL_CHUNK):
            if cancelled():
                return -1
            llm.eval(prompt[start : start + PREFILL_CHUNK])
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


# --- the crlhf-lsp backend ----------------------------------------------------------------


def from_settings(settings: Settings) -> LlamaCppBackend:
    path, name = resolve_gguf(settings.model)
    threads = os.environ.get("CRLHF_LLAMACPP_THREADS", "")
    return LlamaCppBackend(path, name=name, n_threads=int(threads) if threads.isdigit() else None)


def resolve_gguf(spec: str | None) -> tuple[Path, str]:
    """(GGUF file, model id) for a model setting: a ``.gguf`` path, or whatever
    ``crlhf_models.resolve_model`` knows (empty: ``$CRLHF_MODEL``, else the default model)."""
    path = Path(spec or "").expanduser()
    if spec and path.suffix == ".gguf" and path.is_file():
        return path, spec
    try:
        from crlhf_models import ModelError, resolve_model
    except ImportError:
        msg = f"the llamacpp backend needs a .gguf model file; {spec!r} is not one"
        raise BackendError(msg) from None
    try:
        ref = resolve_model(spec or None)
    except ModelError as exc:
        raise BackendError(str(exc)) from exc
    if ref.gguf is None:
        raise BackendError(
            f"model {ref.model_id!r} has no GGUF file for llama.cpp; use the 'local' backend"
        )
    return Path(ref.gguf), ref.model_id


def gguf_model(spec: str | None) -> Path | None:
    """The GGUF file a model setting names, or ``None`` (not a GGUF, or not resolvable)."""
    try:
        return resolve_gguf(spec)[0]
    except BackendError:
        return None


class LlamaCppBackend(Backend):
    """crlhf-lsp's ``llamacpp`` backend: one :class:`LlamaCppEngine` behind the Backend API.

    One llama.cpp context holds one KV cache: the last request's, whatever its document.
    Adapters: ``load_adapter(folder)`` applies the registry's ``gguf`` artifact, which
    :class:`~crlhf_lsp.adapters.AdapterManager` saves as ``<folder>.gguf`` (or a ``*.gguf``
    inside the folder); an adapter published with PEFT files only is converted on the spot
    with :mod:`crlhf_models.gguf_lora` when the ``gguf`` package is installed.
    """

    adapter_artifact = "gguf"

    def __init__(self, model_path: str | Path, *, name: str | None = None, **engine) -> None:
        try:
            self.engine = LlamaCppEngine(model_path, **engine)
        except LlamaCppError as exc:
            raise BackendError(str(exc)) from exc
        self.name = name or str(model_path)
        self.fim_tokens = detect_fim_tokens(self._fim_vocab())
        self.adapter: str | None = None
        self.last_swap_s: float | None = None

    def _fim_vocab(self) -> dict[str, int]:
        """The FIM markers this vocabulary has as single tokens (what detect_fim_tokens needs)."""
        found: dict[str, int] = {}
        for family in FIM_FAMILIES:
            for piece in family:
                token = self.engine.token_id(piece.removeprefix("▁"))
                if token is not None:
                    found[piece] = token
        return found

    def count_tokens(self, text: str) -> int:
        return len(self.engine.tokenize(text, special=True))

    def prompt_ids(self, prompt: str) -> list[int]:
        """As transformers' ``tokenizer(prompt).input_ids``: BOS if the model wants one,
        control tokens (FIM markers) parsed."""
        return self.engine.tokenize(prompt, add_bos=self.engine.add_bos, special=True)

    encode = prompt_ids  # the server counts the prompt with these ids and hands them back

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        ids = request.prompt_ids
        if ids is None:
            ids = self.prompt_ids(request.prompt)
        if not ids:
            return Generation(text="", token_ids=[], prompt_token_ids=[], token_logprobs=[])
        try:
            out = self.engine.generate(
                ids,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                stop=request.should_stop,
                cancelled=cancel.is_set,
            )
        except (LlamaCppError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp failed to generate: {exc}") from exc
        return Generation(
            text=out.text,
            token_ids=out.token_ids,
            prompt_token_ids=out.prompt_token_ids,
            token_logprobs=out.logprobs,
            cancelled=out.cancelled or cancel.is_set(),
            cached_tokens=out.reused_tokens,
        )

    def trim(self, generation: Generation, text: str) -> Generation:
        """Keep the fewest tokens whose text covers ``text`` (the post-processed suggestion)."""
        ids = generation.token_ids or []
        n = len(ids)
        while n > 0 and len(self.engine.detokenize(ids[: n - 1])) >= len(text):
            n -= 1
        generation.token_ids = ids[:n]
        generation.token_logprobs = (generation.token_logprobs or [])[:n]
        return generation

    # --- adapters -----------------------------------------------------------------------

    def gguf_file(self, folder: Path) -> Path:
        """The GGUF LoRA of the adapter in ``folder`` (converting PEFT files if need be)."""
        folder = Path(folder)
        sibling = folder.with_name(folder.name + ".gguf")  # where AdapterManager puts it
        found = [sibling] if sibling.is_file() else sorted(folder.glob("*.gguf"))
        if found:
            return found[0]
        if not (folder / "adapter_model.safetensors").is_file():
            raise AdapterMismatch(f"adapter in {folder} has neither a .gguf nor PEFT files")
        try:
            from crlhf_models.errors import AdapterError as TrainerAdapterError
            from crlhf_models.gguf_lora import convert_peft_to_gguf
        except ImportError as exc:
            raise AdapterError(
                f"adapter in {folder} has no GGUF artifact and the gguf package is missing "
                "to convert it (pip install gguf)"
            ) from exc
        try:
            return convert_peft_to_gguf(
                folder, folder / "adapter.gguf", base_config=self._base_config()
            ).path
        except TrainerAdapterError as exc:
            raise AdapterMismatch(str(exc)) from exc

    def _base_config(self) -> dict[str, object]:
        meta = self.engine._llm.metadata
        arch = self.engine.architecture
        heads = int(meta.get(f"{arch}.attention.head_count", 0))
        return {
            "model_type": arch,
            "num_hidden_layers": int(meta.get(f"{arch}.block_count", 0)),
            "num_attention_heads": heads,
            "num_key_value_heads": int(meta.get(f"{arch}.attention.head_count_kv", heads)),
        }

    def check_adapter(self, folder: Path) -> None:
        """Locate (or convert) the GGUF LoRA and read its header; runs off the model thread,
        so llama.cpp itself sees the file only in :meth:`load_adapter`."""
        path = self.gguf_file(folder)
        try:
            from gguf import GGUFReader
        except ImportError:
            return
        try:
            fields = GGUFReader(str(path)).fields
            kind = fields["general.type"].contents()
            arch = fields["general.architecture"].contents()
        except Exception as exc:  # a truncated or foreign file: numpy / KeyError / ValueError
            raise AdapterMismatch(f"{path} is not a readable GGUF LoRA: {exc}") from exc
        if kind != "adapter" or arch != self.engine.architecture:
            raise AdapterMismatch(
                f"{path} is a GGUF {kind!r} for {arch!r}, not a LoRA adapter for "
                f"{self.engine.architecture!r}"
            )

    def load_adapter(self, folder: Path, version: str) -> None:
        path = self.gguf_file(folder)
        try:
            self.last_swap_s = self.engine.set_adapter(path)
        except LlamaCppError as exc:
            raise AdapterMismatch(str(exc)) from exc
        self.adapter = version

    def unload_adapter(self) -> None:
        self.last_swap_s = self.engine.set_adapter(None)
        self.adapter = None

    def close(self) -> None:
        self.engine.close()
