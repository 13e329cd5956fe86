"""The model backend interface: a prompt in, a generation out, adapters swapped between.

A backend is used from one worker thread at a time (the server's model thread), so
implementations need no locking; ``generate`` must check ``cancel`` between tokens and
return what it has when it is set.

``MemoryBackend`` replays canned texts: it is for unit tests of the other modules only;
end-to-end tests drive the real ``local`` backend with the tiny model of ``tests/tiny_model.py``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GenerationRequest:
    prompt: str
    """The whole model input (plain prefix, or a FIM prompt with its special tokens)."""
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    """Sampling seed: the same prompt, model, temperature and seed give the same sample."""
    cache_key: str | None = None
    """Requests with the same key (a document URI) may reuse each other's KV cache."""
    should_stop: Callable[[str], bool] | None = None
    """Called with the text so far after each token; True ends the generation early."""
    stop: list[str] = field(default_factory=list)
    """Plain stop strings, for servers that take them (openai); the local backend uses
    ``should_stop``."""
    prompt_ids: list[int] | None = None
    """``prompt`` as the backend's ``encode`` tokenized it, when the caller already did
    (the server counts the prompt's tokens that way): the backend need not do it again."""


@dataclass
class Generation:
    text: str
    token_ids: list[int] | None = None
    prompt_token_ids: list[int] | None = None
    token_logprobs: list[float] | None = None
    cancelled: bool = False
    cached_tokens: int = 0
    """Prompt tokens whose KV cache was reused (local backend)."""


class Backend(ABC):
    """One model; ``name`` is what completions record as their ``model``."""

    name: str = ""
    fim_tokens: tuple[str, str, str] | None = None
    """(prefix, suffix, middle) special tokens when the model knows fill-in-the-middle."""
    adapter_files: bool = True
    """False: ``load_adapter`` needs only the version (the server loads it, e.g. vLLM)."""
    in_process: bool = False
    """True: the model and its KV cache live in this process (llamacpp, local), so work
    ahead (the suggestion after an accept) costs no request to a shared server."""

    @abstractmethod
    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Generation: ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``; backends without a tokenizer estimate 4 characters a token."""
        return max(1, len(text) // 4)

    def encode(self, text: str) -> list[int] | None:
        """The model's input ids for the prompt ``text`` (special tokens included), which
        ``generate`` accepts as ``GenerationRequest.prompt_ids``; None: this backend does
        not take ids (it tokenizes elsewhere, e.g. in its server)."""
        return None

    def cached_tokens(self, ids: list[int], cache_key: str | None) -> int | None:
        """How many leading ``ids`` the KV cache (``cache_key``'s) holds now; None: this
        backend cannot tell, and prompts are never shortened for time."""
        return None

    def prefill(self, ids: list[int], cache_key: str | None, cancel: threading.Event) -> None:  # noqa: B027
        """Read ``ids`` into the KV cache without generating (stop early on ``cancel``)."""

    def load_adapter(self, folder: Path, version: str) -> None:
        """Make the adapter in ``folder`` the active one; on failure keep the old one."""
        raise NotImplementedError(f"the {type(self).__name__} backend does not load adapters")

    def unload_adapter(self) -> None:  # noqa: B027 - optional hook
        """Go back to the base model."""

    def check_adapter(self, folder: Path) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~crlhf_lsp.errors.AdapterMismatch` if the adapter does not fit."""

    def trim(self, generation: Generation, text: str) -> Generation:
        """``generation`` with its tokens cut to those that produce ``text`` (a prefix of
        its text after post-processing); backends without a tokenizer keep them all."""
        return generation

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model's memory."""


class MemoryBackend(Backend):
    """Returns ``texts`` in turn (unit tests of prompt/postprocess/server plumbing only)."""

    def __init__(self, texts: list[str] | None = None, name: str = "memory") -> None:
        self.texts = texts or ["pass\n"]
        self.name = name
        self.requests: list[GenerationRequest] = []
        self.adapter: str | None = None

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        self.requests.append(request)
        text = self.texts[(len(self.requests) - 1) % len(self.texts)]
        return Generation(text=text, cancelled=cancel.is_set())

    def load_adapter(self, folder: Path, version: str) -> None:
        self.adapter = version

    def unload_adapter(self) -> None:
        self.adapter = None
