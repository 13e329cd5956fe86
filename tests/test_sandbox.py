"""The sandbox: generated programs end, whatever they do, and never in our process."""

from __future__ import annotations

import os

import pytest
from crlhf_trainer.sandbox import Sandbox, network_isolation_prefix

SB = Sandbox(timeout=3, cpu_seconds=2, memory_mb=256)


def test_a_passing_and_a_failing_program():
    assert SB.run("assert sum([1, 2]) == 3\n").outcome == "passed"
    failed = SB.run("assert 1 == 2\n")
    assert failed.outcome == "failed" and "AssertionError" in failed.stderr


def test_an_infinite_loop_is_killed():
    result = SB.run("while True:\n    pass\n")
    assert result.outcome == "timeout" and not result.passed


def test_a_sleeping_program_and_its_children_are_killed():
    result = SB.run("import os, time\nos.fork()\ntime.sleep(60)\n")
    assert result.outcome == "timeout"


def test_a_memory_bomb_is_stopped():
    result = SB.run("x = []\nwhile True:\n    x.append(' ' * 10**6)\n")
    assert result.outcome == "memory" and not result.passed


def test_it_runs_in_an_empty_temporary_directory_with_a_scrubbed_environment():
    code = (
        "import os\n"
        "assert os.listdir('.') == ['program.py'], os.listdir('.')\n"
        "assert 'CRLHF_SECRET' not in os.environ\n"
        f"assert os.getcwd() != {os.getcwd()!r}\n"
    )
    os.environ["CRLHF_SECRET"] = "x"
    try:
        assert SB.run(code).passed
    finally:
        del os.environ["CRLHF_SECRET"]


def test_large_files_are_refused():
    result = SB.run("open('f', 'w').write('x' * (20 * 2**20))\n")
    assert result.outcome == "failed" and "File too large" in result.stderr


@pytest.mark.skipif(not network_isolation_prefix(), reason="no network namespace here")
def test_no_network_where_the_os_allows_it():
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
        "except OSError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('network reachable')\n"
    )
    assert SB.isolated
    assert SB.run(code).passed
