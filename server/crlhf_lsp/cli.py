"""``crlhf-lsp [--stdio] [--tcp HOST:PORT] [--log-level LEVEL]``: start the language server.

LSP over stdio by default (``--stdio`` is accepted because editors pass it); ``--tcp`` is for
debugging with a client that connects to a port. Logs go to stderr, never to stdout (which
carries the protocol).
"""

from __future__ import annotations

import argparse
import logging
import sys

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

    server = create_server()
    try:
        if args.tcp:
            host, _, port = args.tcp.rpartition(":")
            if not port.isdigit():
                parser.error(f"--tcp wants HOST:PORT, not {args.tcp!r}")
            server.start_tcp(host or "127.0.0.1", int(port))
        else:
            server.start_io()
    finally:
        server.shutdown_all()
    return 0
