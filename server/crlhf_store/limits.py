"""Body-size limit (ASGI middleware): a body over the limit gets 413 before it is stored.

A declared ``Content-Length`` over the limit is refused before reading; a chunked body is
counted as it arrives and refused once it passes the limit. The upload limit (2 GiB by
default) applies to an adapter upload by a trainer's token only (authenticated by
:class:`crlhf_store.authgate.BearerGate`, which runs first); everyone else gets the JSON
limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crlhf_store.authgate import principal_of


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes; send smaller batches")


class BodySizeLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        upload_limit: int,
        upload_paths: tuple[str, ...] = ("/v1/adapters",),
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal = principal_of(scope)
        may_upload = principal is not None and principal.may("trainer")
        limit = (
            self.upload_limit if may_upload and scope["path"] in self.upload_paths else self.limit
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_413(send, limit)


async def _send_413(send: Send, limit: int) -> None:
    body: dict[str, Any] = {"detail": BodyTooLarge(limit).detail}
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
