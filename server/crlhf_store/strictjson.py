"""JSON bodies the database can store, or a 422 naming the body.

Python's ``json`` accepts two things no database column or JSON response can carry:
``NaN`` / ``Infinity`` literals and ``\\ud800``-style escapes of unpaired UTF-16
surrogates (a ``str`` that cannot be encoded as UTF-8). Left alone they fail deep in the
driver (a 500) or, worse, get stored and break every later response that includes them.
The routes of the store use :class:`StrictJSONRoute`, whose request refuses both while
parsing, which FastAPI turns into a 422 like any other JSON syntax error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; send a finite number or null")


def loads_strict(body: bytes | str) -> Any:
    """``json.loads`` without NaN/Infinity and without unpaired surrogates."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), raw.decode(errors="replace"), 0) from exc
    if _SURROGATE_ESCAPE.search(raw):  # rare: only then pay for the exact check
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise json.JSONDecodeError(
                "a string holds an unpaired UTF-16 surrogate", raw.decode(errors="replace"), 0
            ) from exc
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
