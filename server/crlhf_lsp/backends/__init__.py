"""Model backends, chosen by the ``backend`` setting from :data:`BACKENDS`.

Each entry maps a name to a factory ``(settings) -> Backend``; factories import their heavy
dependencies (torch, transformers) lazily so the server starts fast and the lsp extra does
not need them unless the backend is used. A new backend (llama.cpp, issue 9) is one module
with a ``from_settings`` function and one line here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

from crlhf_lsp.backends.base import Backend, Generation, GenerationRequest, MemoryBackend
from crlhf_lsp.errors import BackendError

if TYPE_CHECKING:
    from crlhf_lsp.settings import Settings

__all__ = [
    "BACKENDS",
    "Backend",
    "Generation",
    "GenerationRequest",
    "MemoryBackend",
    "create_backend",
]


def _local(settings: Settings) -> Backend:
    from crlhf_lsp.backends.local import from_settings

    return from_settings(settings)


def _openai(settings: Settings) -> Backend:
    from crlhf_lsp.backends.openai import from_settings

    return from_settings(settings)


def _llamacpp(settings: Settings) -> Backend:
    try:
        from crlhf_lsp.backends.llamacpp import from_settings  # type: ignore[import-not-found]
    except ImportError as exc:
        raise BackendError("the llamacpp backend is not available in this install") from exc
    return from_settings(settings)


def _auto(settings: Settings) -> Backend:
    """llamacpp for a GGUF model on the CPU when llama-cpp-python is installed, else local."""
    if settings.device == "cpu" and importlib.util.find_spec("llama_cpp") is not None:
        from crlhf_lsp.backends.llamacpp import gguf_model

        if gguf_model(settings.model) is not None:
            return _llamacpp(settings)
    return _local(settings)


BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "auto": _auto,
    "local": _local,
    "openai": _openai,
    "llamacpp": _llamacpp,
}


def create_backend(settings: Settings) -> Backend:
    try:
        factory = BACKENDS[settings.backend]
    except KeyError:
        raise BackendError(
            f"unknown backend {settings.backend!r}; use one of {sorted(BACKENDS)}"
        ) from None
    return factory(settings)
