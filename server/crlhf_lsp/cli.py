"""``crlhf-lsp [--stdio] [--tcp HOST:PORT] [--log-level LEVEL]``: start the language server.

LSP over stdio by default (``--stdio`` is accepted because editors pass it); ``--tcp`` is for
debugging with a client that connects to a port. Logs go to stderr, never to stdout (which
carries the protocol).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import BinaryIO

from crlhf_lsp import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crlhf-lsp", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP port instead")
    parser.add_argument("--log-level", default="WARNING", help="stderr log level (INFO, DEBUG)")
    parser.add_argument("--version", action="version", version=f"crlhf-lsp {__version__}")
    args = parser.parse_args(argv)

    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from crlhf_lsp.server import create_server
    from crlhf_lsp.stdio import serve_stdio

    server = create_server()
    try:
        if args.tcp:
            host, _, port = args.tcp.rpartition(":")
            if not port.isdigit():
                parser.error(f"--tcp wants HOST:PORT, not {args.tcp!r}")
            server.start_tcp(host or "127.0.0.1", int(port))
        else:
            serve_stdio(server, sys.stdin.buffer, _private_stdout())
    finally:
        server.shutdown_all()
    return 0


def _private_stdout() -> BinaryIO:
    """The protocol's own copy of stdout; fd 1 itself is pointed at stderr.

    Native libraries write to fd 1, and some (llama-cpp-python with ``verbose=False``) even
    dup2 /dev/null over fds 1 and 2 process-wide while a model loads: an LSP reply written
    by another thread in that window was lost, and the editor waited forever. The protocol
    writes to a duplicate that nothing else knows about.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")  # pygls flushes after every message
