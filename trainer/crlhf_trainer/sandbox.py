"""Run a generated program in a jail, never in the trainer's process nor as its user.

Each program runs under bubblewrap (``bwrap``): a new mount namespace whose root is an empty
read-only tmpfs holding only what the interpreter needs, bound read-only (Python's prefix,
``/usr/lib``, ``/lib*``, ``/etc/ld.so.cache``); never ``/``, a home or a work folder (with
``/`` bound, a world-readable file in the trainer's home is readable even as ``nobody``).
What is enforced, and how:

==================  ==========================================================
limit               mechanism
==================  ==========================================================
files               only the bound interpreter, read-only; a private ``/tmp``
                    (a size-capped tmpfs holding ``program.py``, the working
                    directory) and private ``/proc`` and ``/dev``
processes           a new PID namespace (``--unshare-pid``): the program sees
                    only its own tree; when its first process ends, or on a
                    kill, the kernel ends every process in it, ``setsid()``
                    or not; ``--die-with-parent`` if the trainer dies;
                    ``RLIMIT_NPROC`` (see *uid* for why it counts only the run)
network             a new network namespace: a loopback and nothing else
uid                 unprivileged, no capabilities, ``no_new_privs``
wall-clock time     ``timeout`` s, then SIGKILL to the jail's init (its PID
                    namespace dies with it), whoever holds stderr
CPU time            ``RLIMIT_CPU`` (SIGXCPU, then SIGKILL one second later)
memory              ``RLIMIT_AS`` (allocations fail: ``MemoryError``)
file size, disk     ``RLIMIT_FSIZE`` per file; ``/tmp`` is ``disk_mb`` at most
open files          ``RLIMIT_NOFILE``
output              stdout goes to ``/dev/null``; stderr through a pipe read with
                    a cap (``max_output_kb``): past it the jail is killed, so a
                    flood never grows the trainer
==================  ==========================================================

*uid.* Run by an ordinary user, bwrap makes a user namespace in which the program is uid
65534. Run by root, a user namespace would map that uid to root outside, and the kernel
never applies ``RLIMIT_NPROC`` to root's processes; so as root bwrap makes no user
namespace (it keeps only ``CAP_SETUID``/``CAP_SETGID`` for the launcher), and the launcher
drops to a uid of its own per run (``fresh_uid`` in :mod:`crlhf_trainer.jail`, far above
login uids, like systemd's DynamicUser), so that ``RLIMIT_NPROC`` counts that run's
processes and no other's. The jail's command line is built there too.

*The sentinel.* A program passes only if its checks run to the end: exiting 0 early
(``exit(0)``, ``os._exit(0)``, an ``atexit`` or ``sys.excepthook`` that exits 0 after a
failed ``assert``), or a killed checker, must not count. The launcher (trusted code run by
``python -I -c`` before the program) runs ``program.py`` with :func:`runpy.run_path` and
only when that returns copies a per-run random sentinel from an inherited pipe (written by
the trainer, 32 hex digits) to a second pipe the trainer reads: a pass is exit status 0
*and* exactly that sentinel. The sentinel is in no file, argument, environment variable or
Python object the program can see; its source (``program.py``) and the launcher's (in
``/proc/self/cmdline``) name only the pipe's number. What this does not stop: code that
shares the checks' interpreter can do whatever the launcher does, so a program written
against this harness (one that reads that pipe itself) can fake a pass. Stopping that
would take the checks out of the program's process; the sentinel stops the ways a model
stumbles on or learns a pass without passing.

Where bwrap cannot run (not installed, user namespaces refused), :class:`Sandbox` refuses
(:class:`SandboxUnavailable`, naming the fix) unless made with ``unsafe=True``
(``crlhf-train --unsafe-eval``): then programs run as the trainer's user, in a temporary
folder, with the same rlimits (but ``RLIMIT_NPROC``, which would count all of that user's
processes) and the same sentinel, and can read and delete what that user can.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Literal

from .errors import CrlhfTrainError
from .jail import fresh_uid, jail_argv, jail_problem

__all__ = [
    "Outcome",
    "Sandbox",
    "SandboxResult",
    "SandboxUnavailable",
    "check_jail",
    "jail_problem",
]

Outcome = Literal["passed", "failed", "timeout", "memory", "error"]

_TAIL = 2000  # characters of stderr kept for the result


class SandboxUnavailable(CrlhfTrainError):
    """Generated programs cannot be jailed here, and running them unjailed was not asked."""


@dataclass
class SandboxResult:
    outcome: Outcome
    returncode: int | None
    stderr: str  # its last 2,000 characters, and a note on why it did not pass

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass
class Sandbox:
    """Limits for one program; ``run(code)`` returns how it ended."""

    timeout: float = 10.0  # wall-clock seconds
    cpu_seconds: int = 10
    memory_mb: int = 1024  # address space; Python itself needs ~30 MB of it
    max_files: int = 64  # open at once
    max_file_mb: int = 16  # written per file
    max_processes: int = 32  # tasks (threads count) of the run
    max_output_kb: int = 1024  # stderr; past it the program is killed
    disk_mb: int = 64  # the jail's /tmp, held in memory
    unsafe: bool = False  # where bwrap cannot run, run programs unjailed (loudly)
    _problem: str | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._problem = check_jail(unsafe=self.unsafe)
        if self._problem is not None:
            warnings.warn(
                f"generated programs run UNJAILED, as this user ({self._problem}): "
                "they can read and delete your files and reach the network",
                RuntimeWarning,
                stacklevel=3,
            )

    @property
    def jailed(self) -> bool:
        return self._problem is None

    def run(self, code: str) -> SandboxResult:
        sentinel = secrets.token_hex(16).encode()
        fds = _Fds()
        try:
            # The sentinel waits in a pipe that the launcher reads only after the checks.
            fds.child["given"], given = os.pipe()
            os.write(given, sentinel)
            os.close(given)
            fds.told, fds.child["told"] = os.pipe()
            with contextlib.ExitStack() as stack:
                if self.jailed:
                    proc = self._start_jailed(code, fds)
                else:
                    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="crlhf-"))
                    proc = self._start_unjailed(code, fds, folder)
                fds.close_child()
                how, tail = _watch(proc, fds.info, self.timeout, self.max_output_kb * 1024)
                told = _read_now(fds.told)
        finally:
            fds.close_all()
        return _classify(how, proc.returncode, tail, told == sentinel, self.jailed)

    # --- starting ---------------------------------------------------------------------

    def _launcher(self, fds: _Fds, uid: int | None, nproc: bool) -> str:
        # Trusted code that runs first in the program's interpreter: limits, uid, then the
        # program, then (only if it returned) the sentinel. No preexec_fn: the trainer
        # holds torch's threads, and Python code between fork and exec can deadlock there.
        mb = 2**20
        limits = [
            ("RLIMIT_CPU", self.cpu_seconds, self.cpu_seconds + 1),
            ("RLIMIT_AS", self.memory_mb * mb, self.memory_mb * mb),
            ("RLIMIT_NOFILE", self.max_files, self.max_files),
            ("RLIMIT_FSIZE", self.max_file_mb * mb, self.max_file_mb * mb),
            ("RLIMIT_CORE", 0, 0),
        ]
        if nproc:
            limits.append(("RLIMIT_NPROC", self.max_processes, self.max_processes))
        given, told = fds.child["given"], fds.child["told"]
        drop = f"os.setgroups([]); os.setgid({uid}); os.setuid({uid})\n" if uid else ""
        return (
            "import os, resource, runpy, sys\n"
            "low = 3\n"  # close every inherited fd but the two pipes
            f"for fd in {sorted((given, told))!r}:\n"
            "    os.closerange(low, fd)\n"
            "    low = fd + 1\n"
            "os.closerange(low, 65536)\n"
            f"for name, soft, hard in {limits!r}:\n"
            "    resource.setrlimit(getattr(resource, name), (soft, hard))\n"
            f"{drop}"
            "sys.argv = ['program.py']\n"
            "runpy.run_path('program.py', run_name='__main__')\n"
            f"os.write({told}, os.read({given}, 64))\n"
        )

    def _start_jailed(self, code: str, fds: _Fds) -> subprocess.Popen:
        program = fds.child["program"] = os.memfd_create("program.py")
        os.write(program, code.encode("utf-8"))
        os.lseek(program, 0, os.SEEK_SET)
        fds.info, fds.child["info"] = os.pipe()
        uid = fresh_uid() if os.geteuid() == 0 else None
        launcher = self._launcher(fds, uid, nproc=True)
        argv = jail_argv(
            launcher,
            program_fd=program,
            info_fd=fds.child["info"],
            disk_bytes=self.disk_mb * 2**20,
        )
        return _popen(argv, fds, cwd=None, env={})

    def _start_unjailed(self, code: str, fds: _Fds, folder: str) -> subprocess.Popen:
        with open(os.path.join(folder, "program.py"), "w", encoding="utf-8") as f:
            f.write(code)
        # RLIMIT_NPROC would count every process of the trainer's user, not the program's.
        launcher = self._launcher(fds, uid=None, nproc=False)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": folder, "TMPDIR": folder}
        return _popen([sys.executable, "-I", "-B", "-c", launcher], fds, cwd=folder, env=env)


@dataclass
class _Fds:
    """The pipes of one run: the trainer's ends, and the ends the jail inherits."""

    told: int | None = None  # the sentinel comes back here
    info: int | None = None  # bwrap's JSON with the jail init's pid
    child: dict[str, int] = field(default_factory=dict)

    def close_child(self) -> None:
        for fd in self.child.values():
            os.close(fd)
        self.child.clear()

    def close_all(self) -> None:
        self.close_child()
        for fd in (self.told, self.info):
            if fd is not None:
                os.close(fd)
        self.told = self.info = None


def _popen(argv: list[str], fds: _Fds, *, cwd: str | None, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=tuple(fds.child.values()),
        start_new_session=True,  # its own process group: the unjailed tree is killed as one
    )


def check_jail(*, unsafe: bool) -> str | None:
    """``None`` when programs will run jailed; why not, when ``unsafe`` lets them run unjailed.

    Raises :class:`SandboxUnavailable`, naming the fix, when they cannot be jailed and
    ``unsafe`` is false.
    """
    problem = jail_problem()
    if problem is not None and not unsafe:
        raise SandboxUnavailable(
            f"generated programs cannot run in a jail here: {problem}. Install bubblewrap "
            "(`make setup-system`, or `apt-get install bubblewrap`) on a kernel that allows "
            "user namespaces (Debian/Ubuntu: sysctl kernel.unprivileged_userns_clone=1, "
            "kernel.apparmor_restrict_unprivileged_userns=0); or accept running them "
            "unjailed, as this user, with `crlhf-train --unsafe-eval` (Sandbox(unsafe=True))"
        )
    return problem


# --- watching, killing, judging -------------------------------------------------------


def _watch(
    proc: subprocess.Popen, info_fd: int | None, timeout: float, cap: int
) -> tuple[str, bytes]:
    """Read stderr (at most ``cap`` bytes) until the jail ends, the clock runs out or the cap.

    Returns how it ended (``exited``, ``timeout``, ``flood``) and stderr's tail; the whole
    tree is dead when it returns. A process that keeps stderr open does not stretch the
    clock: the deadline is checked between reads, and the wait after EOF is bounded too.
    """
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    err = proc.stderr.fileno()
    tail, seen, info = b"", 0, b""
    how = "exited"
    with selectors.DefaultSelector() as sel:
        sel.register(err, selectors.EVENT_READ)
        if info_fd is not None:
            sel.register(info_fd, selectors.EVENT_READ)
        while err in sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                how = "timeout"
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                elif key.fd == err:
                    seen += len(chunk)
                    tail = (tail + chunk)[-4 * _TAIL :]
                else:
                    info = (info + chunk)[:4096]
            if seen > cap:
                how = "flood"
                break
    if how == "exited":
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            how = "timeout"
    if how != "exited":
        if info_fd is not None:
            info += _read_now(info_fd)
        _kill(proc, _jail_init(info))
    proc.stderr.close()
    return how, tail


def _jail_init(info: bytes) -> int | None:
    """The pid of the jail's init (``child-pid`` of bwrap's ``--info-fd`` JSON)."""
    try:
        return int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _kill(proc: subprocess.Popen, init: int | None) -> None:
    # SIGKILL to the jail's init ends its PID namespace: the kernel kills every process in
    # it and bwrap, which waits for that init, exits only once they are all gone. bwrap
    # itself is killed only if that did not work (or in an unjailed run).
    if init is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _read_now(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


def _classify(how: str, rc: int | None, tail: bytes, told: bool, jailed: bool) -> SandboxResult:
    stderr = tail.decode("utf-8", "replace")[-_TAIL:]
    if how == "timeout":
        return SandboxResult("timeout", None, stderr)
    if how == "flood":
        return SandboxResult("error", rc, stderr + "\n[sandbox: stderr over its cap: killed]")
    if rc == 0 and told:
        return SandboxResult("passed", rc, stderr)
    # bwrap reports a signal as 128 + its number; Popen as minus it
    sig = -rc if rc is not None and rc < 0 else (rc - 128 if jailed and rc and rc > 128 else 0)
    if "MemoryError" in stderr:
        return SandboxResult("memory", rc, stderr)
    if sig in (signal.SIGXCPU, signal.SIGKILL):
        return SandboxResult("timeout", rc, stderr)
    if rc == 0:
        note = "\n[sandbox: exited 0 before its checks had run to the end]"
        return SandboxResult("failed", rc, stderr + note)
    if "AssertionError" in stderr or rc == 1:
        return SandboxResult("failed", rc, stderr)
    return SandboxResult("error", rc, stderr)
