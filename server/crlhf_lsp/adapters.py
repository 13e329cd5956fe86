"""New adapters from the store's registry: poll, download, verify, swap, announce.

``AdapterManager.check()`` (on a timer every ``adapterPollSeconds``, or the command
``crlhf.checkAdapter``) asks ``GET /v1/adapters/latest``; a version it has not loaded is
downloaded into the cache folder (``<cache>/<version>``), its archive sha256 and folder digest
verified (:meth:`crlhf_contract.client.StoreClient.download_adapter`), then checked against the
base model by the backend (LoRA, safetensors only, target modules and shapes). The swap
itself is handed to ``swap`` which runs it on the model thread, between two generations,
never during one; a failed swap leaves the previous adapter in place (the backend rolls
back) and the version is not tried again until the registry names another one.

Nothing the store says is trusted as a path or as content:

- the version must be one the registry could hold (:data:`crlhf_contract.digest.VERSION`)
  and every path built from it must resolve inside the cache folder;
- with ``adapterPublicKey`` set, the registry's record (version, folder digest, GGUF
  digest) must carry the trainer's Ed25519 signature (:mod:`crlhf_contract.signing`)
  before anything is downloaded; the files are then checked against those digests;
- a cached folder or ``.gguf`` is re-hashed against the registry's digests every time it
  is about to be loaded, and downloaded again when it differs.

A backend that hands the adapter to a server (``openai``: vLLM, llama-server) raises
:class:`AdapterUnavailable` when the server cannot take it now (down, misconfigured, not
started with it): the adapter is not refused, the next check tries it again.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crlhf_contract.client import StoreClient, StoreError, adapter_version, gguf_artifact
from crlhf_contract.digest import file_sha256, folder_digest
from crlhf_contract.schemas import AdapterOut
from crlhf_contract.signing import verify_adapter

from crlhf_lsp.errors import AdapterError


class AdapterUnavailable(AdapterError):
    """A verified adapter the model server could not take now; tried again at the next check."""


@dataclass(frozen=True)
class Swapped:
    version: str
    previous: str | None
    seconds: float


@dataclass(frozen=True)
class Checked:
    """What one check did, said for the user (``crlhf.checkAdapter`` answers it)."""

    outcome: str  # loaded | current | none | refused | unavailable | unreachable | no-store
    version: str | None  # the adapter in use after the check; None: the base model
    latest: str | None  # the registry's latest version, when the store answered
    message: str
    swapped: Swapped | None = None


class AdapterManager:
    def __init__(
        self,
        cache_dir: Path,
        *,
        client: Callable[[], StoreClient | None],
        swap: Callable[[Path, str], float],
        announce: Callable[[Swapped], None],
        log: Callable[[str, bool], None],
        wants_files: Callable[[], bool] = lambda: True,
        base_model: Callable[[], str] = lambda: "",
        public_key: Callable[[], str] = lambda: "",
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.client = client
        self.swap = swap
        self.announce = announce
        self.log = log
        self.wants_files = wants_files
        self.base_model = base_model
        self.public_key = public_key
        self.on_change = on_change
        self.current: str | None = None
        self.published: bool | None = None
        """Whether the registry has an adapter (None until it answered once)."""
        self.refused: dict[str, str] = {}
        """Versions refused, and why: not tried again until the registry names another."""
        self.poll_seconds = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="crlhf-adapters", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.poll_seconds > 0:
                try:
                    self.check()
                except Exception as exc:  # the poller must outlive any single failure
                    self.log(f"crlhf: adapter check failed: {exc}", True)
            self._wake.wait(timeout=self.poll_seconds if self.poll_seconds > 0 else None)
            self._wake.clear()

    def check(self) -> Swapped | None:
        """Load the registry's latest adapter if it is new; what was swapped, if anything."""
        return self.check_now().swapped

    def check_now(self) -> Checked:
        """Load the registry's latest adapter if it is new; what happened, for the user."""
        with self._lock:
            client = self.client()
            if client is None:
                return self._checked("no-store", None, "no store is set (crlhf.storeUrl)")
            try:
                latest = client.latest_adapter()
            except StoreError as exc:
                self.log(f"crlhf: could not ask the store for adapters: {exc}", False)
                return self._checked("unreachable", None, f"could not ask the store: {exc}")
            self._set_published(latest is not None)
            if latest is None:
                return self._checked("none", None, "no adapter published yet")
            version = latest.version
            if version == self.current:
                return self._checked("current", version, f"already on {version}")
            if version in self.refused:
                return self._checked("refused", version, self._refusal(version))
            try:
                swapped = self._install(client, latest)
            except AdapterUnavailable as exc:
                keeping = self.current or "the base model"
                self.log(f"crlhf: adapter {version} not loaded: {exc}; keeping {keeping}", True)
                return self._checked("unavailable", version, f"{version} not loaded: {exc}")
            except (AdapterError, StoreError, OSError, ValueError) as exc:
                self.refused[version] = str(exc)
                keeping = self.current or "the base model"
                self.log(f"crlhf: adapter {self._refusal(version)}; keeping {keeping}", True)
                return self._checked("refused", version, self._refusal(version))
            message = f"adapter {version} loaded in {swapped.seconds * 1000:.0f} ms"
            return self._checked("loaded", version, message, swapped)

    def _checked(
        self, outcome: str, latest: str | None, message: str, swapped: Swapped | None = None
    ) -> Checked:
        if outcome not in ("loaded", "current"):
            message += f"; using {self.current or 'the base model'}"
        return Checked(outcome, self.current, latest, message, swapped)

    def _refusal(self, version: str) -> str:
        return f"{version} refused: {self.refused[version]}"

    def _set_published(self, published: bool) -> None:
        if published != self.published:
            self.published = published
            self.on_change()

    def _install(self, client: StoreClient, adapter: AdapterOut) -> Swapped:
        adapter_version(adapter.version)
        key = self.public_key()
        if key:
            gguf = gguf_artifact(adapter)
            verify_adapter(
                key,
                adapter.signature,
                version=adapter.version,
                sha256=adapter.sha256,
                gguf_sha256=gguf.sha256 if gguf else None,
            )
        base = self.base_model()
        if base and adapter.base_model and Path(base).name != Path(adapter.base_model).name:
            self.log(
                f"crlhf: adapter {adapter.version} was trained on {adapter.base_model}, "
                f"the model here is {base}; loading it only if its shapes fit",
                False,
            )
        folder = self._download(client, adapter) if self.wants_files() else self.cache_dir
        seconds = self.swap(folder, adapter.version)
        swapped = Swapped(adapter.version, self.current, seconds)
        self.current = adapter.version
        self.announce(swapped)
        return swapped

    def _download(self, client: StoreClient, adapter: AdapterOut) -> Path:
        dest = self._in_cache(adapter.version)
        self._download_gguf(client, adapter, self._in_cache(adapter.version + ".gguf"))
        if dest.is_dir():
            names = [p.name for p in dest.iterdir() if p.is_file()]
            if folder_digest(dest, names) == adapter.sha256:
                return dest
            shutil.rmtree(dest)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{adapter.version}.", dir=self.cache_dir))
        try:
            client.download_adapter(adapter, work)
            work.rename(dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return dest

    def _in_cache(self, name: str) -> Path:
        """``<cache>/<name>``, refused unless it resolves to a direct child of the cache: a
        name from the store becomes a folder that may be deleted and replaced."""
        adapter_version(name.removesuffix(".gguf"))
        cache = self.cache_dir.resolve()
        path = (cache / name).resolve()
        if path.parent != cache or not path.is_relative_to(cache):
            raise AdapterError(f"adapter path {name!r} leaves the cache {cache}: refused")
        return path

    def _download_gguf(self, client: StoreClient, adapter: AdapterOut, path: Path) -> None:
        """The GGUF LoRA artifact (llamacpp backend), verified, next to the PEFT folder; a
        cached one is re-hashed first and replaced when it is not what the registry says."""
        artifact = gguf_artifact(adapter)
        if artifact is None:
            return
        if path.is_file():
            got = file_sha256(path)
            if got == artifact.sha256:
                return
            self.log(
                f"crlhf: cached {path.name} has sha256 {got}, the registry says "
                f"{artifact.sha256}: downloading it again",
                True,
            )
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        client.download_gguf(adapter, partial)
        partial.replace(path)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
