"""Running ``crlhf-store serve`` as a child process: for the demo and the test suite.

One definition of the command line and of "ready" (``GET /readyz`` answers 200), so the
demo and the tests start the store exactly the way a team would.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["StoreNotReady", "free_port", "serve_command", "stop_process", "wait_ready"]


class StoreNotReady(RuntimeError):
    """The store process exited early or did not answer /readyz in time."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a store, or anything, to bind next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(
    *, port: int, data_dir: Path, database_url: str, workers: int | None = None
) -> list[str]:
    """The argv of a quiet ``crlhf-store serve`` on 127.0.0.1:``port`` (``workers``: None
    leaves the count to ``CRLHF_WORKERS``, else 1)."""
    return [
        sys.executable,
        "-m",
        "crlhf_store",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
        "--log-level",
        "warning",
        "--no-access-log",
        *(["--workers", str(workers)] if workers is not None else []),
    ]


def wait_ready(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    timeout: float,
    poll: float = 0.2,
    log: Callable[[], str] = str,
) -> None:
    """Return once ``url``/readyz answers 200; ``log()`` is appended to the error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StoreNotReady(f"crlhf-store exited early{log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(poll)
    raise StoreNotReady(f"crlhf-store did not get ready in {timeout:.0f} s{log()}")


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:  # type: ignore[type-arg]
    """Stop ``proc`` politely (SIGTERM), killing it if it has not exited in ``timeout`` s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
