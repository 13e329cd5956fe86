"""The sandbox: generated programs end, pass only by running their checks, and stay jailed.

Each escape that worked against the unjailed sandbox (issue 14) is tried here and must be
contained: reading or deleting files outside, reading the trainer's command line, a
``setsid`` survivor, a child holding stderr open, a stderr flood, a fork loop, and passing
without running the checks (``exit(0)``, ``os._exit(0)``, patched hooks, a killed checker).
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from crlhf_trainer import sandbox as sandbox_module
from crlhf_trainer.sandbox import Sandbox, SandboxUnavailable

SB = Sandbox(timeout=3, cpu_seconds=2, memory_mb=256)
QUICK = Sandbox(timeout=1.5, cpu_seconds=1, memory_mb=256)


def test_a_passing_and_a_failing_program():
    assert SB.jailed
    assert SB.run("assert sum([1, 2]) == 3\n").outcome == "passed"
    failed = SB.run("assert 1 == 2\n")
    assert failed.outcome == "failed" and "AssertionError" in failed.stderr


def test_an_infinite_loop_is_killed():
    result = QUICK.run("while True:\n    pass\n")
    assert result.outcome == "timeout" and not result.passed


def test_a_sleeping_program_and_its_children_are_killed():
    started = time.monotonic()
    result = QUICK.run("import os, time\nos.fork()\ntime.sleep(60)\n")
    assert result.outcome == "timeout" and time.monotonic() - started < 3


def test_a_memory_bomb_is_stopped():
    result = SB.run("x = []\nwhile True:\n    x.append(' ' * 10**6)\n")
    assert result.outcome == "memory" and not result.passed


def test_it_runs_in_an_empty_temporary_directory_with_a_scrubbed_environment(monkeypatch):
    monkeypatch.setenv("CRLHF_SECRET", "x")
    code = (
        "import os\n"
        "assert os.listdir('.') == ['program.py'], os.listdir('.')\n"
        "assert 'CRLHF_SECRET' not in os.environ\n"
        f"assert os.getcwd() != {os.getcwd()!r}\n"
    )
    assert SB.run(code).passed


def test_large_files_are_refused():
    result = SB.run("open('f', 'w').write('x' * (20 * 2**20))\n")
    assert result.outcome == "failed" and "File too large" in result.stderr


def test_no_network():
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=1)\n"
        "except OSError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('network reachable')\n"
    )
    assert SB.run(code).passed


def test_it_runs_as_an_unprivileged_uid_without_capabilities():
    code = (
        "import os\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "assert os.getuid() != 0 and os.geteuid() != 0, os.getuid()\n"
        "assert int(status['CapEff'], 16) == 0 and int(status['CapPrm'], 16) == 0, status\n"
        "assert status['NoNewPrivs'].strip() == '1'\n"
    )
    result = SB.run(code)
    assert result.passed, result.stderr


# --- files outside ------------------------------------------------------------------


@pytest.fixture
def canaries(tmp_path: Path):
    """World-readable, world-writable canaries in a temp folder and in $HOME."""
    tmp_path.chmod(0o777)
    in_tmp = tmp_path / "canary.txt"
    in_home = Path.home() / f".crlhf-canary-{uuid.uuid4().hex}"
    for canary in (in_tmp, in_home):
        canary.write_text("CANARY")
        canary.chmod(0o666)
    try:
        yield [in_tmp, in_home, Path("pyproject.toml").resolve()]
    finally:
        in_home.unlink(missing_ok=True)


def test_files_outside_the_jail_cannot_be_read(canaries):
    code = (
        "import os\n"
        f"for path in {[str(c) for c in canaries]!r}:\n"
        "    assert not os.path.exists(path), path\n"
        "    try:\n"
        "        open(path).read()\n"
        "    except OSError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError(f'read {path}')\n"
        f"assert not os.path.exists({str(Path.home())!r} + '/.bashrc')\n"
    )
    result = SB.run(code)
    assert result.passed, result.stderr


def test_files_outside_the_jail_cannot_be_written_or_deleted(canaries):
    in_tmp, in_home, _ = canaries
    code = (
        "import os\n"
        f"for path in {[str(in_tmp), str(in_home)]!r}:\n"
        "    for act in (lambda: open(path, 'w').write('gone'), lambda: os.remove(path)):\n"
        "        try:\n"
        "            act()\n"
        "        except OSError:\n"
        "            pass\n"
    )
    SB.run(code)
    assert in_tmp.read_text() == "CANARY" and in_home.read_text() == "CANARY"


def test_the_trainers_command_line_and_environment_are_out_of_sight(monkeypatch):
    secret = f"crlhf_{uuid.uuid4().hex}"
    monkeypatch.setenv("CRLHF_TOKEN", secret)
    # The program reads every process's cmdline and environ it can see, the parent's first.
    code = (
        "import os\n"
        "pids = [os.getppid()] + [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
        "seen = b''\n"
        "for pid in pids:\n"
        "    for part in ('cmdline', 'environ'):\n"
        "        try:\n"
        "            seen += open(f'/proc/{pid}/{part}', 'rb').read()\n"
        "        except OSError:\n"
        "            pass\n"
        "assert b'pytest' not in seen, seen[:300]\n"
        "assert len(pids) <= 4, pids  # its own PID namespace: bwrap's init and itself\n"
    )
    result = SB.run(code)
    assert result.passed, result.stderr
    assert secret not in result.stderr


# --- processes that try to outlive the run --------------------------------------------


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def _survivor(marker: str, *, keep_stderr: bool) -> str:
    """A grandchild in a new session (``setsid``), sleeping with ``marker`` in its argv."""
    close = "" if keep_stderr else "    os.close(2)\n"
    return (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"{close}"
        "    if os.fork() == 0:\n"
        "        os.execv(sys.executable, [sys.executable, '-c', "
        f"'import time; time.sleep(30)', {marker!r}])\n"
        "    os._exit(0)\n"
        "import time\n"
        "time.sleep(0.3)\n"
    )


@pytest.mark.parametrize("keep_stderr", [False, True], ids=["detached", "holding-stderr"])
def test_a_setsid_survivor_dies_with_the_run(keep_stderr):
    marker = f"crlhf-survivor-{uuid.uuid4().hex}"
    started = time.monotonic()
    result = SB.run(_survivor(marker, keep_stderr=keep_stderr))
    took = time.monotonic() - started
    left = _processes_with(marker)
    for pid in left:  # never leave one behind, even when the test fails
        os.kill(pid, 9)
    assert left == []
    # the survivor holding stderr must not stretch the run to its time limit
    assert took < SB.timeout / 2 and result.passed


def test_a_stderr_flood_neither_grows_the_trainer_nor_outlasts_the_limit():
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page

    peak, done = [rss()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start_rss, started = peak[0], time.monotonic()
    try:
        result = SB.run("import sys\nfor _ in range(300):\n    sys.stderr.write('x' * 2**20)\n")
    finally:
        done.set()
        sampler.join()
    assert time.monotonic() - started < SB.timeout
    assert max(peak) - start_rss < 32 * 2**20
    assert result.outcome == "error" and "cap" in result.stderr


def test_a_fork_loop_is_bounded():
    sb = Sandbox(timeout=3, cpu_seconds=2, memory_mb=256, max_processes=16)
    code = (
        "import os, sys, time\n"
        "kids = 0\n"
        "while kids < 200:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    kids += 1\n"
        "sys.stderr.write(f'kids={kids}\\n')\n"
    )
    result = sb.run(code)
    kids = int(re.search(r"kids=(\d+)", result.stderr).group(1))
    assert kids < 16


# --- passing without running the checks -----------------------------------------------

CHECKS = "def check(f):\n    assert f(2) == 4\n    assert f(3) == 9\n\ncheck(square)\n"


@pytest.mark.parametrize(
    "solution",
    [
        "def square(x):\n    exit(0)\n",
        "def square(x):\n    import sys\n    sys.exit(0)\n",
        "def square(x):\n    import os\n    os._exit(0)\n",
        "import os\nos._exit(0)\ndef square(x):\n    return x\n",
        "quit()\n",
    ],
    ids=["exit", "sys.exit", "os._exit", "os._exit-at-import", "quit"],
)
def test_exiting_zero_before_the_checks_end_fails(solution):
    result = SB.run(solution + CHECKS)
    assert result.returncode == 0 and result.outcome == "failed", result


@pytest.mark.parametrize(
    "patch",
    [
        "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
        "import atexit, os\natexit.register(os._exit, 0)\n",
        "import builtins\nclass Quiet(Exception): pass\nbuiltins.AssertionError = Quiet\n"
        "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    ],
    ids=["excepthook", "atexit", "AssertionError-replaced"],
)
def test_patched_exception_hooks_do_not_turn_a_failed_check_into_a_pass(patch):
    result = SB.run(patch + "def square(x):\n    return x + 1\n" + CHECKS)
    assert not result.passed


@pytest.mark.parametrize(
    "kill",
    [
        "import os\nos.kill(os.getpid(), 9)\n",
        "import os, signal, time\n"
        "if os.fork() == 0:\n    os.kill(os.getppid(), signal.SIGKILL)\n    os._exit(0)\n"
        "time.sleep(5)\n",
        "import os\ntry:\n    os.kill(1, 9)\nexcept OSError:\n    pass\nos._exit(0)\n",
    ],
    ids=["itself", "by-its-child", "the-jails-init"],
)
def test_a_killed_checker_never_passes(kill):
    result = SB.run("def square(x):\n    return x * x\n" + kill + CHECKS)
    assert not result.passed


def test_the_sentinel_is_nowhere_the_program_can_read(monkeypatch):
    sentinel = "5e" * 16
    monkeypatch.setattr(sandbox_module.secrets, "token_hex", lambda n: sentinel)
    # Everything the program can read without touching the launcher's pipe: its source,
    # its globals, argv, environ and every command line in its PID namespace.
    code = (
        "import os, re, sys\n"
        "blob = open(__file__).read() + repr(globals()) + repr(sys.argv) + repr(os.environ)\n"
        "for pid in (p for p in os.listdir('/proc') if p.isdigit()):\n"
        "    for part in ('cmdline', 'environ'):\n"
        "        try:\n"
        "            blob += open(f'/proc/{pid}/{part}', 'rb').read().decode('latin-1')\n"
        "        except OSError:\n"
        "            pass\n"
        "print('hex32=', re.findall('[0-9a-f]{32}', blob), file=sys.stderr, flush=True)\n"
        "os._exit(0)\n"
    )
    result = SB.run(code)
    assert "hex32=" in result.stderr and sentinel not in result.stderr
    assert not result.passed


def test_programs_run_at_once_from_threads_each_get_their_own_result():
    programs = ["assert True\n", "assert False\n", "exit(0)\n", "x = 1\n"] * 2
    with ThreadPoolExecutor(4) as pool:
        outcomes = [r.outcome for r in pool.map(SB.run, programs)]
    assert outcomes == ["passed", "failed", "failed", "passed"] * 2


# --- where bubblewrap cannot run ------------------------------------------------------


def test_without_a_jail_it_refuses_unless_told_to_run_unjailed(monkeypatch):
    monkeypatch.setattr(sandbox_module, "jail_problem", lambda: "bubblewrap is not installed")
    with pytest.raises(SandboxUnavailable, match="--unsafe-eval") as refused:
        Sandbox()
    assert "apt-get install bubblewrap" in str(refused.value)
    with pytest.warns(RuntimeWarning, match="UNJAILED"):
        unjailed = Sandbox(timeout=3, memory_mb=256, unsafe=True)
    assert not unjailed.jailed
    assert unjailed.run("def square(x):\n    return x * x\n" + CHECKS).passed
    assert unjailed.run("def square(x):\n    exit(0)\n" + CHECKS).outcome == "failed"


def test_the_probe_names_a_missing_bwrap(monkeypatch):
    from crlhf_trainer import jail

    monkeypatch.setattr(jail.shutil, "which", lambda name: None)
    assert "not installed" in jail.jail_problem.__wrapped__()
