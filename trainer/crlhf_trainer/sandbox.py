"""Run a generated program, never in the trainer's process.

Each program runs in its own ``python -I`` subprocess, in a new session (so the whole
process group can be killed), in an empty temporary directory that is deleted afterwards,
with a scrubbed environment. What is enforced, and how:

==================  ==========================================================  =========
limit               mechanism                                                   where
==================  ==========================================================  =========
wall-clock time     ``timeout`` s, then SIGKILL to the process group            always
CPU time            ``RLIMIT_CPU`` (SIGXCPU, then SIGKILL one second later)     POSIX
memory              ``RLIMIT_AS`` (allocations fail: ``MemoryError``)           Linux
open files          ``RLIMIT_NOFILE`` (64)                                      POSIX
file size           ``RLIMIT_FSIZE`` (16 MiB written per file)                  POSIX
processes           ``RLIMIT_NPROC`` not set: it counts the user's processes
                    everywhere, so a fork bomb is bounded only by the timeout
network             a new network namespace (``unshare -rn``, or ``unshare -n``  Linux
                    as root): no interface but a downed loopback; elsewhere
                    the network is *not* isolated and ``Sandbox.isolated``
                    says so
filesystem          only the working directory is fresh; the program can read
                    what the trainer's user can read — run the trainer as an
                    unprivileged user, or in a container, for untrusted models
==================  ==========================================================  =========

The limits are set by a two-line launcher that then ``exec``s the program (no
``preexec_fn``, which is unsafe in a process with threads). ``python -I`` ignores
``PYTHON*`` variables and the user's site-packages and does not put the script's
directory on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Literal

__all__ = ["Outcome", "Sandbox", "SandboxResult", "network_isolation_prefix"]

Outcome = Literal["passed", "failed", "timeout", "memory", "error"]


@dataclass
class SandboxResult:
    outcome: Outcome
    returncode: int | None
    stderr: str  # its last 2,000 characters

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@functools.cache
def network_isolation_prefix() -> tuple[str, ...]:
    """The command prefix that gives a program no network here, or ``()`` if none works."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return ()
    for flags in ("-rn", "-n"):
        try:
            probe = subprocess.run(
                [unshare, flags, "true"], capture_output=True, timeout=5, check=False
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return (unshare, flags, "--")
    return ()


@dataclass
class Sandbox:
    """Limits for one program; ``run(code)`` returns how it ended."""

    timeout: float = 10.0  # wall-clock seconds
    cpu_seconds: int = 10
    memory_mb: int = 1024  # address space; Python itself needs ~30 MB of it
    max_files: int = 64
    max_file_mb: int = 16
    isolate_network: bool = True

    @property
    def isolated(self) -> bool:
        return self.isolate_network and bool(network_isolation_prefix())

    def _launcher(self) -> list[str]:
        # The limits are set by a tiny launcher that then execs the program, not by a
        # preexec_fn: the trainer holds torch's threads, and code between fork and exec in
        # a threaded process can deadlock.
        limits = (
            f"C=({self.cpu_seconds},{self.cpu_seconds + 1});M={self.memory_mb * 2**20};"
            f"N={self.max_files};F={self.max_file_mb * 2**20};"
            "r.setrlimit(r.RLIMIT_CPU,C);r.setrlimit(r.RLIMIT_AS,(M,M));"
            "r.setrlimit(r.RLIMIT_NOFILE,(N,N));r.setrlimit(r.RLIMIT_FSIZE,(F,F));"
            "r.setrlimit(r.RLIMIT_CORE,(0,0));"
        )
        run = "os.execv(sys.executable,[sys.executable,'-I','program.py'])"
        code = f"import os,sys,resource as r;{limits}{run}"
        return [sys.executable, "-I", "-S", "-c", code]

    def run(self, code: str) -> SandboxResult:
        prefix = network_isolation_prefix() if self.isolate_network else ()
        with tempfile.TemporaryDirectory(prefix="crlhf-sandbox-") as cwd:
            script = os.path.join(cwd, "program.py")
            with open(script, "w", encoding="utf-8") as f:
                f.write(code)
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cwd, "TMPDIR": cwd}
            proc = subprocess.Popen(
                [*prefix, *self._launcher()],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as a whole
            )
            try:
                _, err = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                _, err = proc.communicate()
                return SandboxResult("timeout", None, _tail(err))
        stderr = _tail(err)
        rc = proc.returncode
        if rc == 0:
            return SandboxResult("passed", rc, stderr)
        if rc in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in stderr:
            return SandboxResult("timeout", rc, stderr)
        if "MemoryError" in stderr:
            return SandboxResult("memory", rc, stderr)
        if "AssertionError" in stderr or rc == 1:
            return SandboxResult("failed", rc, stderr)
        return SandboxResult("error", rc, stderr)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(err: bytes | None) -> str:
    return (err or b"").decode("utf-8", "replace")[-2000:]
