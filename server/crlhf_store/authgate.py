"""Authenticate before reading the body (ASGI middleware).

FastAPI reads and parses a request's body (16 MiB of JSON, or a 2 GiB multipart upload
spooled to disk) before it runs the dependencies that check the token, so a caller with
no token could make the store do all that work. :class:`BearerGate` looks the bearer
token up first, from the headers alone: a request to the token-protected API (``/v1/…``,
``/metrics``) without a live token gets its 401 before ``receive()`` is ever called.

The principal it found travels in the ASGI scope (:func:`principal_of`), where the route
dependencies (:func:`crlhf_store.deps.current_principal`) take it instead of looking the
token up again, and where :class:`crlhf_store.limits.BodySizeLimit` reads the scope: only a
trainer's token may send an upload-sized body.

Not gated: ``/healthz``, ``/readyz``, the OpenAPI pages, and ``/dashboard`` (its own
cookie sessions, :mod:`crlhf_store.dashboard.auth`).
"""

from __future__ import annotations

import json
import logging

from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from crlhf_store.db import Database
from crlhf_store.tokens import Principal, authenticate

log = logging.getLogger("crlhf_store")

PRINCIPAL_KEY = "crlhf.principal"
GATED_PREFIXES = ("/v1/", "/metrics")
"""Paths that need a bearer token; every route under them depends on one."""
MISSING = (
    "missing bearer token: send `Authorization: Bearer <token>` "
    "(`crlhf-store create-annotator NAME` prints one)"
)
UNKNOWN = "unknown or revoked token"


def principal_of(scope: Scope) -> Principal | None:
    """The principal :class:`BearerGate` authenticated for this request, if any."""
    return scope.get(PRINCIPAL_KEY)


def gated(path: str) -> bool:
    return path.startswith(GATED_PREFIXES) or path == "/v1"


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header (as FastAPI's HTTPBearer reads it)."""
    raw = dict(scope["headers"]).get(b"authorization")
    if raw is None:
        return None
    scheme, credentials = get_authorization_scheme_param(raw.decode("latin-1"))
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


class BearerGate:
    """Refuse a request to the API without a live token before its body is read."""

    def __init__(self, app: ASGIApp, *, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not gated(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            await _refuse(send, scope, 401, MISSING)
            return
        try:
            principal = await run_in_threadpool(self._authenticate, token)
        except OperationalError as exc:  # as the app answers a database error: retry later
            log.error("database error authenticating %s: %s", scope["path"], exc)
            await _refuse(send, scope, 503, "the database is unavailable; retry later")
            return
        if principal is None:
            await _refuse(send, scope, 401, UNKNOWN)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    def _authenticate(self, token: str) -> Principal | None:
        with self.db.reading() as session:
            return authenticate(session, token=token)


async def _refuse(send: Send, scope: Scope, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    else:
        headers.append((b"retry-after", b"5"))
    request_headers = dict(scope["headers"])
    if request_headers.get(b"content-length", b"0") != b"0" or (
        b"transfer-encoding" in request_headers
    ):
        # The body stays unread: the connection cannot carry another request.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
