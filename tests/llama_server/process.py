"""The llama-server that ``setup.sh`` (beside this file) builds: where it is, and running it.

:func:`find_llama_server` looks where setup.sh caches it, ``CRLHF_LLAMA_SERVER`` first;
:func:`run_llama_server` starts it on a free loopback port with a model and LoRA adapters
(``--lora``) and stops it after.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from crlhf_store.process import stop_process


def cache_root() -> Path:
    """setup.sh's ``CRLHF_LLAMA_SERVER_CACHE`` default."""
    if root := os.environ.get("CRLHF_LLAMA_SERVER_CACHE"):
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "crlhf" / "llama-server"


def find_llama_server() -> Path | None:
    """The binary: ``CRLHF_LLAMA_SERVER``, else the build of the installed llama-cpp-python's
    version (the llamacpp backend's llama.cpp), else any build setup.sh left; None if none."""
    if explicit := os.environ.get("CRLHF_LLAMA_SERVER"):
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    builds = sorted(cache_root().glob("*/llama-server"), reverse=True)
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:  # make check installs no llama.cpp
        version = ""
    builds.sort(key=lambda b: not b.parent.name.startswith(f"{version}-"))  # stable
    return next((b for b in builds if os.access(b, os.X_OK)), None)


@contextmanager
def run_llama_server(
    binary: Path, model: Path, loras: list[Path], *, log: Path | None = None
) -> Iterator[str]:
    """The base URL of ``binary`` serving ``model`` with ``loras`` (ids in this order)."""
    port = _free_port()
    args = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    for lora in loras:
        args += ["--lora", str(lora)]
    # As an operator would start it (each --lora at scale 1 until crlhf sets them); 2 threads
    # (2 shared cores); one slot, so every request meets the KV cache the one before left.
    args += ["-t", "2", "-c", "512", "-np", "1", "--no-webui"]
    log = log or model.parent / f"llama-server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        stop_process(proc)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``GET /health`` answers 200 (503 while the model loads)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited {proc.returncode}: {_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama-server did not become healthy in 60 s: {_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
