"""crlhf-lsp's stdio plumbing: nothing but the protocol may reach the editor's pipe."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_native_writes_to_stdout_never_reach_the_protocol_pipe() -> None:
    """llama-cpp-python points fds 1 and 2 at /dev/null while a model loads; a native library
    may print to fd 1. Neither may touch the protocol stream (a lost initialize reply hung
    the demo)."""
    script = textwrap.dedent(
        """
        import os, sys
        from crlhf_lsp.cli import _private_stdout
        out = _private_stdout()
        os.write(1, b"native noise\\n")          # a C library printing to stdout
        print("python noise")                     # a stray print
        null = os.open(os.devnull, os.O_WRONLY)   # what suppress_stdout_stderr does
        saved = os.dup(1); os.dup2(null, 1)
        out.write(b"Content-Length: 2\\r\\n\\r\\n{}"); out.flush()
        os.dup2(saved, 1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=True
    )
    assert done.stdout == b"Content-Length: 2\r\n\r\n{}"
    assert b"native noise" in done.stderr and b"python noise" in done.stderr
