"""LSP over stdio with the event loop reading stdin itself.

pygls reads stdin on a worker thread, one ``run_in_executor`` round trip per header line
and per body: four thread hand-offs for every message, each a wake-up of two threads. A
keystroke typed through a suggestion is two messages (didChange, the request), and on a
shared two-core machine those wake-ups were a third of its latency (old and new server in
one run: p50 2.5 → 1.6 ms, p95 3.6 → 2.8 ms) and about a millisecond of a completion's.
Here the loop watches the pipe (``connect_read_pipe``), so a message costs one wake-up.

Only pipes and sockets on POSIX can be watched that way; anything else (a regular file, a
terminal shared with stdout, Windows) goes through pygls's own reader.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from typing import BinaryIO

from pygls.io_ import StdoutWriter, run_async
from pygls.server import JsonRPCServer

log = logging.getLogger(__name__)

READ_LIMIT = 1 << 20
"""Bytes buffered before reading pauses (asyncio's 64 KiB default would pause and resume
many times while a large file is opened)."""


def pollable(stdin: BinaryIO, stdout: BinaryIO) -> bool:
    """Whether the loop can watch ``stdin``: a pipe or a socket that is not also ``stdout``
    (watching makes the file non-blocking, which a shared stdout must not become). POSIX
    only: Windows' proactor loop cannot watch the non-overlapped pipes editors pass."""
    if os.name != "posix":
        return False
    try:
        fd_in, fd_out = stdin.fileno(), stdout.fileno()
        info, out = os.fstat(fd_in), os.fstat(fd_out)
    except (OSError, ValueError, AttributeError):
        return False
    if not (stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode)):
        return False
    return (info.st_dev, info.st_ino) != (out.st_dev, out.st_ino)


class PipeReader:
    """What ``pygls.io_.run_async`` reads from: ``readline`` and ``readexactly`` that
    return ``b""`` once the client has gone."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream

    async def readline(self) -> bytes:
        return await self.stream.readline()

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self.stream.readexactly(n)
        except asyncio.IncompleteReadError:
            return b""


async def _serve(server: JsonRPCServer, stdin: BinaryIO, stop: threading.Event) -> None:
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=READ_LIMIT)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
    try:
        await run_async(
            stop_event=stop,
            reader=PipeReader(stream),
            protocol=server.protocol,
            logger=log,
            error_handler=server.report_server_error,
        )
    finally:
        transport.close()


def serve_stdio(server: JsonRPCServer, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serve ``server`` on ``stdin``/``stdout`` until the client exits or goes away."""
    if not pollable(stdin, stdout):
        log.info("stdin is read by pygls's reader thread (not a pipe or socket of its own)")
        server.start_io(stdin, stdout)
        return
    log.info("stdin is read by the event loop")
    stop = server._stop_event = threading.Event()  # pygls's shutdown() sets it
    server.protocol.set_writer(StdoutWriter(stdout))
    try:
        asyncio.run(_serve(server, stdin, stop))
    except BrokenPipeError:
        log.error("the client's pipe closed; shutting down")
    except (KeyboardInterrupt, SystemExit):  # ``exit`` ends the process with sys.exit
        pass
    finally:
        server.shutdown()
