"""crlhf_lsp.stdio: the event loop reads a pipe or socket stdin itself; anything else goes
through pygls's threaded reader. Both must carry whole messages, however they arrive."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crlhf_lsp.stdio import pollable


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def session(tmp_path: Path) -> list[bytes]:
    settings = {
        "backend": "openai",  # nothing heavy to load, and no server is needed to start
        "openaiUrl": "http://127.0.0.1:9",
        "outboxPath": str(tmp_path / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
        "storeUrl": "",
    }
    params = {"processId": None, "capabilities": {}, "initializationOptions": settings}
    return [
        frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}),
        frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        frame({"jsonrpc": "2.0", "id": 2, "method": "crlhf/status", "params": None}),
        frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}),
        frame({"jsonrpc": "2.0", "method": "exit"}),
    ]


def replies(stdout: bytes) -> dict[int, Any]:
    found = {}
    while stdout:
        header, _, rest = stdout.partition(b"\r\n\r\n")
        length = int(header.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        message = json.loads(rest[:length])
        stdout = rest[length:]
        if "id" in message:
            found[message["id"]] = message.get("result")
    return found


def check(found: dict[int, Any]) -> None:
    assert found[1]["capabilities"]["executeCommandProvider"]["commands"]
    assert found[2]["enabled"] is True
    assert 3 in found  # the shutdown reply: then ``exit`` ended the process


SERVER = [sys.executable, "-m", "crlhf_lsp", "--stdio", "--log-level", "INFO"]
LOOP_READS = b"stdin is read by the event loop"


def test_a_pipe_is_read_by_the_loop_even_in_pieces(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None
    messages = session(tmp_path)
    # The first message split mid-header and mid-body, with pauses between the pieces.
    for piece in (messages[0][:7], messages[0][7:40], messages[0][40:]):
        proc.stdin.write(piece)
        proc.stdin.flush()
        time.sleep(0.05)
    proc.stdin.write(b"".join(messages[1:]))  # the rest in one write
    proc.stdin.flush()
    stdout, stderr = proc.communicate(timeout=60)
    check(replies(stdout))
    assert LOOP_READS in stderr


def test_a_regular_file_goes_through_pygls_reader(tmp_path: Path) -> None:
    requests = tmp_path / "requests.bin"
    requests.write_bytes(b"".join(session(tmp_path)))
    with requests.open("rb") as stdin:
        done = subprocess.run(SERVER, stdin=stdin, capture_output=True, timeout=60)
    check(replies(done.stdout))
    assert LOOP_READS not in done.stderr and b"reader thread" in done.stderr


def test_pollable_needs_a_pipe_or_socket_apart_from_stdout(tmp_path: Path) -> None:
    r, _ = os.pipe()
    _, w = os.pipe()  # stdin and stdout are two pipes
    a, b = socket.socketpair()
    regular = tmp_path / "f"
    regular.write_bytes(b"")
    with (
        os.fdopen(r, "rb") as pipe_in,
        os.fdopen(w, "wb") as pipe_out,
        a.makefile("rb") as sock_in,
        b.makefile("wb") as sock_out,
        a.makefile("wb") as same_sock,
        regular.open("rb") as file_in,
    ):
        assert pollable(pipe_in, pipe_out)
        assert pollable(sock_in, sock_out)
        assert not pollable(sock_in, same_sock)  # non-blocking would reach stdout too
        assert not pollable(file_in, pipe_out)
    a.close()
    b.close()


def test_a_client_gone_mid_message_ends_the_server(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None
    proc.stdin.write(session(tmp_path)[0][:-5])  # the body cut short, then EOF
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
