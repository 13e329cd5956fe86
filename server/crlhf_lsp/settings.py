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
``openaiApiKey``       ``$CRLHF_OPENAI_API_KEY``   the bearer sent to ``openaiUrl`` (openai);
                                                   empty: none. The store's ``token`` is
                                                   never sent there
``openaiServer``       ``auto``                    ``vllm`` or ``llama-server``: how a new
                                                   adapter reaches the server (openai);
                                                   ``auto``: asked (``GET /lora-adapters``)
``openaiAdapterDir``   empty                       a folder the vLLM server also reads, at
                                                   the same path: verified adapters are
                                                   copied there as ``<dir>/<version>``;
                                                   empty: vLLM reads crlhf-lsp's own cache
                                                   (the same machine)
``maxTokens``          ``64``                      most generated tokens per completion
``temperature``        ``0.0``                     0: greedy; above: sampling
``seed``               ``0``                       sampling seed: the same prompt, model,
                                                   temperature and seed give the same
                                                   suggestion (as the cache would)
``outboxPath``         user data dir               the SQLite outbox file
``adapterPollSeconds`` ``300``                     how often to ask the store for a new
                                                   adapter; 0: never (``crlhf.checkAdapter``)
``device``             ``cpu``                     torch device of the local backend
``enabled``            ``true``                    false: no completions (ratings still work)
``adapterPublicKey``   ``$CRLHF_ADAPTER_PUBLIC_   the trainer's Ed25519 public key (the line
                       KEY``                       of ``crlhf-signing.pub``, or its path):
                                                   set, only adapters signed with it load
``allowInsecureStore`` ``false``                   true: accept a plain-http ``storeUrl`` on
                                                   another machine (the token and every
                                                   rating then cross the network readable)
``excludeGlobs``      ``[]``                      more files that get no completion and
                                                   send nothing (``crlhf_lsp.privacy``), on
                                                   top of ``.env*``, ``*.pem``, ``*.key``,
                                                   ``id_rsa*``, ``*.p12``, ``secrets.*``
``retentionDelays``    ``[30, 300]``               seconds after an accept at which what
                                                   became of its lines is reported
                                                   (``crlhf_lsp.retention``); ``[]``: never
``ringBuffer``         ``false``                   true: code from files recently opened,
                                                   saved or left goes before the prompt as
                                                   file-path comments (``crlhf_lsp.ring``)
=====================  ==========================  =========================================

A plain ``http://`` store URL is refused unless its host is this machine (``localhost``,
``127.0.0.0/8``, ``::1``) or ``allowInsecureStore`` is true: use ``https://`` for a team store.

Keys may come flat or under a ``crlhf`` section (``{"crlhf": {...}}``), as VS Code sends them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crlhf_lsp.errors import SettingsError

BACKENDS = ("auto", "local", "openai", "llamacpp")
OPENAI_SERVERS = ("auto", "vllm", "llama-server")


MAX_RETENTION_DELAY = 7 * 24 * 3600.0  # the store refuses a later after_s


class Delays(tuple[float, ...]):
    """Seconds after an accept (a tuple of its own so settings can tell it from strings)."""


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
    openaiApiKey: str = field(default_factory=lambda: os.environ.get("CRLHF_OPENAI_API_KEY", ""))
    openaiServer: str = "auto"
    openaiAdapterDir: str = ""
    maxTokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    outboxPath: str = field(default_factory=_default_outbox)
    adapterPollSeconds: float = 300.0
    device: str = "cpu"
    enabled: bool = True
    adapterPublicKey: str = field(
        default_factory=lambda: os.environ.get("CRLHF_ADAPTER_PUBLIC_KEY", "")
    )
    allowInsecureStore: bool = False
    excludeGlobs: tuple[str, ...] = ()
    retentionDelays: Delays = field(default_factory=lambda: Delays((30.0, 300.0)))
    ringBuffer: bool = False

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
                what = {tuple: "list of strings", Delays: "list of seconds (0 to a week)"}.get(
                    kind, kind.__name__
                )
                message = f"setting {f.name!r}: {value!r} is not a {what}"
                raise SettingsError(message) from exc
        return dataclasses.replace(self, **changes).checked()

    def checked(self) -> Settings:
        """``self`` if every value is usable, else :class:`SettingsError` naming the first
        that is not (the defaults from the environment are checked too)."""
        if self.backend not in BACKENDS:
            raise SettingsError(f"setting 'backend': {self.backend!r}; use one of {BACKENDS}")
        if self.openaiServer not in OPENAI_SERVERS:
            raise SettingsError(
                f"setting 'openaiServer': {self.openaiServer!r}; use one of {OPENAI_SERVERS}"
            )
        if self.maxTokens < 1:
            raise SettingsError("setting 'maxTokens' must be at least 1")
        if not 0 <= self.seed < 2**31:
            raise SettingsError(f"setting 'seed': {self.seed}; use 0 … 2147483647")
        _check_store_url(self.storeUrl, self.allowInsecureStore)
        if self.adapterPublicKey:
            from crlhf_contract.signing import SigningError, load_public_key

            try:
                load_public_key(self.adapterPublicKey)
            except SigningError as exc:
                raise SettingsError(f"setting 'adapterPublicKey': {exc}") from exc
        return self


def _coerce(kind: type, value: Any) -> Any:
    if kind is Delays:  # a list of seconds; one number is a list of one
        items = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(i, bool) or not isinstance(i, int | float) for i in items):
            raise TypeError("not a list of numbers")
        if not all(0 <= i <= MAX_RETENTION_DELAY for i in items):
            raise ValueError("not between 0 and a week")
        return Delays(float(i) for i in items)
    if kind is tuple:  # a list of strings; one string is a list of one
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise TypeError("not a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    if kind is bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if kind is float and isinstance(value, bool) or kind is int and isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    return kind(value)


def _check_store_url(url: str, allow_insecure: bool) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"setting 'storeUrl': {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not allow_insecure and not is_loopback(parts.hostname):
        raise SettingsError(
            f"setting 'storeUrl': {url} is plain http to another machine, so the token and "
            "every rating would cross the network readable, and adapters could be replaced "
            "on the way; use https://, or set allowInsecureStore: true on a network you trust"
        )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: traffic that never leaves this machine."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
