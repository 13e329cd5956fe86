"""The jail itself: bubblewrap's command line for one program, and whether one can run here.

:mod:`crlhf_trainer.sandbox` (its docstring has the limits and why) starts programs in
it; this module builds the mount namespace (the interpreter's folders bound read-only,
nothing of a home or a work folder), picks a run's uid when the trainer is root, and
probes once per process whether bwrap can make a jail on this machine.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import sys

__all__ = ["fresh_uid", "jail_argv", "jail_problem"]

_UID_BASE = 0x3F000000  # per-run uids as root: far above useradd's range (< 60000)
_run_numbers = itertools.count()


def fresh_uid() -> int:
    """A uid for one run as root (see :mod:`crlhf_trainer.sandbox`, *uid*)."""
    return _UID_BASE + (os.getpid() % 0x10000) * 0x100 + next(_run_numbers) % 0x100


@functools.cache
def _interpreter() -> tuple[str, tuple[str, ...]]:
    """The base interpreter (not the venv's: the venv lives in a work folder) and its prefix."""
    exe = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
    roots = {os.path.realpath(sys.base_prefix), os.path.dirname(exe)}
    return exe, tuple(r for r in sorted(roots) if not any(_inside(r, o) for o in roots - {r}))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _binds() -> list[str]:
    _, roots = _interpreter()
    args: list[str] = []
    for root in roots:
        # bwrap copies the modes of the host's parent folders (/root is 0700): open them
        args += [x for p in _ancestors(root) for x in ("--perms", "0755", "--dir", p)]
        args += ["--ro-bind", root, root]
    for lib in ("/usr/lib", "/usr/lib64", "/usr/lib32"):
        if os.path.isdir(lib) and not any(_inside(lib, r) for r in roots):
            args += ["--ro-bind", lib, lib]
    for top in ("/lib", "/lib64", "/lib32"):  # usr-merged systems: symlinks into /usr
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    # the dynamic loader finds the multiarch libraries through its cache
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def jail_argv(
    command: str, *, program_fd: int | None, info_fd: int | None, disk_bytes: int
) -> list[str]:
    """bwrap's command line for ``python -I -B -c command`` (no secret on it: it is visible)."""
    python, roots = _interpreter()
    if os.geteuid() == 0:
        # --unshare-all minus the user namespace (see the module docstring, *uid*).
        spaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        spaces += ["--unshare-cgroup-try", "--cap-drop", "ALL"]
        spaces += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        spaces = ["--unshare-all", "--unshare-user", "--disable-userns"]
        spaces += ["--uid", "65534", "--gid", "65534"]
    argv = ["bwrap", *spaces, "--die-with-parent", "--new-session", *_binds()]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(disk_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
    if program_fd is not None:
        argv += ["--file", str(program_fd), "/tmp/program.py"]
    argv += ["--remount-ro", "/", "--chdir", "/tmp", "--clearenv"]
    env = {"HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PATH": os.path.dirname(python)}
    for name, value in env.items():
        argv += ["--setenv", name, value]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    return [*argv, "--", python, "-I", "-B", "-c", command]


@functools.cache
def jail_problem() -> str | None:
    """Why generated programs cannot be jailed here, or ``None`` when they can."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux, this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    _, roots = _interpreter()
    for place in {os.path.expanduser("~"), os.getcwd()}:
        exposed = [r for r in roots if r == "/" or _inside(place, r)]
        if exposed:
            return f"Python's folder {exposed[0]} holds {place}, which the jail must not show"
    # as a program would run: as root, after dropping to a run's uid (the stdlib must be
    # readable by it)
    uid = fresh_uid() if os.geteuid() == 0 else None
    drop = f"import os; os.setgroups([]); os.setgid({uid}); os.setuid({uid}); " if uid else ""
    try:
        probe = subprocess.run(
            jail_argv(drop + "import runpy", program_fd=None, info_fd=None, disk_bytes=2**20),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap did not run: {exc}"
    if probe.returncode != 0:
        lines = probe.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        return f"bwrap cannot make a jail here ({lines[-1]}); are user namespaces refused?"
    return None
