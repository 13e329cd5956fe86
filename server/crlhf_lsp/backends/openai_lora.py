"""Hot-swapping a published adapter on the server behind the ``openai`` backend (issue 17).

crlhf-lsp has downloaded and verified the adapter (sha256, signature) before any of this
runs; here it is handed to the server, which differs by engine (``openaiServer``):

- **vLLM** loads LoRA adapters at run time (``--enable-lora`` and the environment variable
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``): ``POST /v1/load_lora_adapter
  {"lora_name": version, "lora_path": path}`` registers it, after which a completion with
  ``model: version`` uses it. ``path`` is where *the server* reads the folder: the verified
  local folder (same machine), or with ``openaiAdapterDir`` a folder shared with the server
  (an NFS mount, a Docker volume mounted at the same path), into which the folder is copied
  as ``<openaiAdapterDir>/<version>``. A version the server already lists in ``/v1/models``
  (a teammate's crlhf-lsp loaded it on a shared server) is not loaded again: registry
  versions are immutable. The new adapter must answer a one-token completion before it is
  used; the two newest this backend loaded stay loaded (a teammate whose crlhf-lsp has not
  polled yet still uses the previous one), older ones are unloaded
  (``POST /v1/unload_lora_adapter {"lora_name": ...}``).
- **llama-server** (llama.cpp) cannot load an adapter file at run time: it only sets the
  scales of the adapters it was started with (``--lora FILE``; ``GET /lora-adapters`` lists
  ``[{"id", "path", "scale"}]``, ``POST /lora-adapters`` takes ``[{"id", "scale"}]``). The
  version is selected when one of them is named for it (``.../v7.gguf`` or ``.../v7/...``):
  its scale becomes 1, the others' 0. Otherwise the server needs a restart with
  ``--lora <the verified .gguf>``, which the error says. The scales also go with every
  completion (``"lora": [{"id", "scale"}]``): llama-server applies the global scales to a
  request that names none, but keeps the KV cache its slot computed under the old ones, so
  the prompt a user just completed would be served half with the old adapter; a request's
  own scales that differ from the slot's clear that cache (``launch_slot_with_task`` in
  tools/server/server-context.cpp, the llama.cpp of llama-cpp-python 0.3.36; seen against
  the real server in tests/lsp/test_llama_server.py).

``auto`` tells them apart by ``GET /lora-adapters``: llama-server answers a list (empty when
started without ``--lora``), vLLM 404. Every failure raises :class:`AdapterUnavailable`:
the adapter was verified, so what failed is the server's state or configuration, and the
next check tries again; meanwhile the previous adapter stays in use.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from crlhf_contract.digest import folder_digest

from crlhf_lsp.adapters import AdapterUnavailable
from crlhf_lsp.settings import is_loopback

log = logging.getLogger(__name__)

KEEP_LOADED = 2
"""Adapters this backend keeps loaded on a vLLM server: the current one and the previous."""


def detect(http: httpx.Client) -> str:
    """``llama-server`` when ``GET /lora-adapters`` answers a list, else ``vllm``; a server
    that does not answer at all is asked again at the next adapter."""
    try:
        response = http.get("/lora-adapters")
    except httpx.HTTPError as exc:
        raise AdapterUnavailable(f"could not reach {http.base_url}: {exc!r}") from exc
    try:
        listed = response.status_code == 200 and isinstance(response.json(), list)
    except ValueError:
        listed = False
    return "llama-server" if listed else "vllm"


class VLLMAdapters:
    """Loads adapters into a vLLM server by name; ``load`` returns the ``model`` to send."""

    def __init__(self, http: httpx.Client, adapter_dir: str = "") -> None:
        self.http = http
        self.adapter_dir = Path(adapter_dir).expanduser() if adapter_dir else None
        self.loaded: list[str] = []
        """Versions this backend loaded (or found loaded and used), oldest first."""

    def load(self, folder: Path, version: str) -> str:
        path = self._server_path(folder, version)
        fresh = version not in self._listed()  # else a teammate's crlhf-lsp loaded it
        if fresh:
            body = {"lora_name": version, "lora_path": path}
            answer = _post(self.http, "/v1/load_lora_adapter", body)
            if answer is not None:
                raise AdapterUnavailable(_load_failed(self.http, answer, path))
        probe = {"model": version, "prompt": "\n", "max_tokens": 1, "temperature": 0}
        answer = _post(self.http, "/v1/completions", probe)
        if answer is not None:
            if fresh:
                _post(self.http, "/v1/unload_lora_adapter", {"lora_name": version})
            raise AdapterUnavailable(f"vLLM loaded {version} but it does not answer: {answer}")
        if version in self.loaded:
            self.loaded.remove(version)
        self.loaded.append(version)
        return version

    def completion_fields(self) -> dict[str, Any]:
        """Nothing more: ``model`` selects the adapter."""
        return {}

    def unload(self) -> None:
        """Nothing: the base model is asked for by name; :meth:`retire` unloads."""

    def retire(self) -> None:
        """Unload the adapters older than the :data:`KEEP_LOADED` newest; failures only log
        (a teammate's crlhf-lsp may have unloaded one already)."""
        while len(self.loaded) > KEEP_LOADED:
            old = self.loaded.pop(0)
            answer = _post(self.http, "/v1/unload_lora_adapter", {"lora_name": old})
            if answer is not None:
                log.warning("vLLM did not unload adapter %s: %s", old, answer)

    def _listed(self) -> set[str]:
        try:
            response = self.http.get("/v1/models")
            data = response.json().get("data") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return set()
        return {str(m.get("id")) for m in data or [] if isinstance(m, dict)}

    def _server_path(self, folder: Path, version: str) -> str:
        if self.adapter_dir is None:
            return str(folder.resolve())
        dest = self.adapter_dir / version
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        try:
            if not dest.is_dir() or folder_digest(dest, names) != folder_digest(folder, names):
                _copy(folder, dest)
        except OSError as exc:
            raise AdapterUnavailable(
                f"could not copy {version} into openaiAdapterDir {self.adapter_dir}: {exc}"
            ) from exc
        return str(dest)


def _copy(folder: Path, dest: Path) -> None:
    """``folder`` as ``dest``, which appears whole or not at all (a teammate's crlhf-lsp may
    copy the same version into a shared folder at the same time; either copy will do)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(folder, work, dirs_exist_ok=True)
        if dest.is_dir():  # a damaged or stale copy: replaced
            shutil.rmtree(dest)
        work.rename(dest)
    except OSError:
        if not dest.is_dir():
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


class LlamaServerAdapters:
    """Selects among the adapters llama-server was started with, by their scales."""

    def __init__(self, http: httpx.Client, model: str) -> None:
        self.http = http
        self.model = model
        self.scales: list[dict[str, Any]] = []
        """The ``[{"id", "scale"}]`` of the last load, sent with every completion."""

    def load(self, folder: Path, version: str) -> str:
        adapters = self._adapters()
        chosen = [a for a in adapters if _named_for(str(a.get("path", "")), version)]
        if not chosen:
            gguf = folder.parent / f"{version}.gguf"
            started = ", ".join(str(a.get("path")) for a in adapters) or "none"
            raise AdapterUnavailable(
                f"llama-server cannot load adapter files at run time (its adapters: "
                f"{started}); restart it with --lora "
                f"{gguf if gguf.is_file() else f'<{version}.gguf>'} to use {version}"
            )
        scales = [{"id": a["id"], "scale": 1.0 if a is chosen[0] else 0.0} for a in adapters]
        answer = _post(self.http, "/lora-adapters", scales)
        if answer is not None:
            raise AdapterUnavailable(f"llama-server did not set the adapter scales: {answer}")
        self.scales = scales
        return self.model

    def completion_fields(self) -> dict[str, Any]:
        """``lora``: the scales, per request, so that a change clears the slot's KV cache."""
        return {"lora": self.scales} if self.scales else {}

    def unload(self) -> None:
        """The base model: every scale 0 in the requests from now on (the server's global
        scales stay until the next load; a teammate may still use them)."""
        self.scales = [{"id": s["id"], "scale": 0.0} for s in self.scales]

    def retire(self) -> None:
        """Nothing to unload: the other adapters' scales are 0."""

    def _adapters(self) -> list[dict[str, Any]]:
        try:
            response = self.http.get("/lora-adapters")
            adapters = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise AdapterUnavailable(f"could not list llama-server's adapters: {exc!r}") from exc
        if not isinstance(adapters, list):
            raise AdapterUnavailable(
                f"llama-server answered {response.status_code} to GET /lora-adapters"
            )
        return [a for a in adapters if isinstance(a, dict) and "id" in a]


def _named_for(path: str, version: str) -> bool:
    """Whether a llama-server adapter path is ``version``'s: ``.../v7.gguf``, ``.../v7/x``."""
    parts = PurePosixPath(path.replace("\\", "/"))
    return parts.stem == version or parts.name == version or parts.parent.name == version


def _post(http: httpx.Client, path: str, body: Any) -> str | None:
    """None when the server answered 2xx, else why not, in one line."""
    try:
        response = http.post(path, json=body)
    except httpx.HTTPError as exc:
        return f"{http.base_url}{path} could not be reached: {exc!r}"
    if response.status_code < 300:
        return None
    return f"{http.base_url}{path} answered {response.status_code}: {response.text[:300]}"


def _load_failed(http: httpx.Client, answer: str, path: str) -> str:
    hint = ""
    if " answered 404" in answer:
        hint = (
            "; start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, "
            "or set openaiServer"
        )
    elif not is_loopback(http.base_url.host):
        hint = f"; can the server read {path}? (openaiAdapterDir: a folder it shares)"
    return f"vLLM did not load the adapter: {answer}{hint}"
