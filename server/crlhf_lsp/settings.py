"""crlhf-lsp's settings: ``initializationOptions`` / ``workspace/didChangeConfiguration`` keys.

=====================  ==========================  =========================================
key                    default                     meaning
=====================  ==========================  =========================================
``storeUrl``           ``$CRLHF_STORE_URL``        the team's crlhf-store; empty: events stay
                                                   in the outbox
``token``              ``$CRLHF_TOKEN``            the annotator's bearer token
``backend``            ``auto``                    ``local`` (transformers + peft),
                                                   ``llamacpp`` (a GGUF on llama.cpp) or
                                                   ``openai`` (``/v1/completions`` server);
                                                   ``auto``: llamacpp for a GGUF model on
                                                   the CPU when installed, else local
``model``              ``$CRLHF_MODEL``            hub id or local folder (local); the model
                                                   name sent to the server (openai)
``openaiUrl``          ``http://127.0.0.1:8000``   base URL of the OpenAI-compatible server
``maxTokens``          ``64``                      most generated tokens per completion
``temperature``        ``0.0``                     0: greedy; above: sampling
``outboxPath``         user data dir               the SQLite outbox file
``adapterPollSeconds`` ``300``                     how often to ask the store for a new
                                                   adapter; 0: never (``crlhf.checkAdapter``)
``device``             ``cpu``                     torch device of the local backend
``enabled``            ``true``                    false: no completions (ratings still work)
=====================  ==========================  =========================================

Keys may come flat or under a ``crlhf`` section (``{"crlhf": {...}}``), as VS Code sends them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlhf_lsp.errors import SettingsError

BACKENDS = ("auto", "local", "openai", "llamacpp")


def _default_outbox() -> str:
    from platformdirs import user_data_dir

    return str(Path(user_data_dir("crlhf", appauthor=False)) / "outbox.sqlite3")


@dataclass(frozen=True)
class Settings:
    storeUrl: str = field(default_factory=lambda: os.environ.get("CRLHF_STORE_URL", ""))
    token: str = field(default_factory=lambda: os.environ.get("CRLHF_TOKEN", ""))
    backend: str = "auto"
    model: str = field(default_factory=lambda: os.environ.get("CRLHF_MODEL", ""))
    openaiUrl: str = "http://127.0.0.1:8000"
    maxTokens: int = 64
    temperature: float = 0.0
    outboxPath: str = field(default_factory=_default_outbox)
    adapterPollSeconds: float = 300.0
    device: str = "cpu"
    enabled: bool = True

    def merged(self, options: Any) -> Settings:
        """A copy with the known keys of ``options`` (a dict, flat or under ``crlhf``)."""
        if not isinstance(options, dict):
            return self
        if isinstance(options.get("crlhf"), dict):
            options = options["crlhf"]
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name not in options or options[f.name] is None:
                continue
            value = options[f.name]
            kind = type(getattr(self, f.name))
            try:
                changes[f.name] = _coerce(kind, value)
            except (TypeError, ValueError) as exc:
                message = f"setting {f.name!r}: {value!r} is not a {kind.__name__}"
                raise SettingsError(message) from exc
        new = dataclasses.replace(self, **changes)
        if new.backend not in BACKENDS:
            raise SettingsError(f"setting 'backend': {new.backend!r}; use one of {BACKENDS}")
        if new.maxTokens < 1:
            raise SettingsError("setting 'maxTokens' must be at least 1")
        return new

    def public(self) -> dict[str, Any]:
        """The settings without the token (for logs)."""
        return dataclasses.asdict(self) | {"token": "***" if self.token else ""}


def _coerce(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if kind is float and isinstance(value, bool) or kind is int and isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    return kind(value)
