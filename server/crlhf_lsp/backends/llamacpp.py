"""The ``llamacpp`` backend: a GGUF model on llama.cpp (llama-cpp-python), GGUF LoRA adapters.

On a laptop CPU llama.cpp reads the context ~3× and writes the suggestion ~6× faster than
transformers, which is the difference between ghost text and none. The contract is the one
of the other backends: the KV cache of the last request reused, cancellation between
prefill chunks and tokens, token ids and log-probs recorded for training, GGUF LoRA
adapters swapped between generations. The engine that does it, one llama.cpp context, is
:class:`~crlhf_lsp.backends.llamacpp_engine.LlamaCppEngine`; this module resolves the model
setting to a GGUF file and puts the engine behind the Backend API.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from crlhf_lsp.backends.base import Backend, Generation, GenerationRequest
from crlhf_lsp.backends.llamacpp_engine import LlamaCppEngine, LlamaCppError
from crlhf_lsp.errors import AdapterError, AdapterMismatch, BackendError
from crlhf_lsp.prompt import FIM_FAMILIES, detect_fim_tokens

if TYPE_CHECKING:
    from crlhf_lsp.settings import Settings

__all__ = [
    "LlamaCppBackend",
    "from_settings",
    "gguf_model",
    "resolve_gguf",
]


def from_settings(settings: Settings) -> LlamaCppBackend:
    path, name = resolve_gguf(settings.model)
    threads = os.environ.get("CRLHF_LLAMACPP_THREADS", "")
    batch = os.environ.get("CRLHF_LLAMACPP_BATCH_THREADS", "auto")
    return LlamaCppBackend(
        path,
        name=name,
        n_threads=int(threads) if threads.isdigit() else None,
        batch_threads=int(batch) if batch.isdigit() else "auto",
    )


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
        ref = resolve_model(spec or None, transformers=False)  # llama.cpp needs no conversion
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
    in_process = True

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
                seed=request.seed,
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

    def cached_tokens(self, ids: list[int], cache_key: str | None) -> int | None:
        return self.engine.cached_prefix(ids)  # one context: whatever the document

    def prefill(self, ids: list[int], cache_key: str | None, cancel: threading.Event) -> None:
        self.engine.prefill(ids, cancelled=cancel.is_set)

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
