"""JSON bodies the database can store, or a 422 naming the field.

Python's ``json`` accepts things no database column or JSON response can carry:

- ``NaN`` / ``Infinity`` literals, and numbers too large for a float (``1e400``, which
  Python reads as ``inf``): SQLite stores them as ``Infinity`` text that is exported as
  ``null``, PostgreSQL's ``json`` refuses them (a 500), and a validation error that quotes
  one cannot even be sent back (its JSON encoding fails: a 500 again);
- a NUL character (``\\u0000``) in any string or object key: PostgreSQL text cannot hold
  one (a 500), SQLite cuts strings at it in places;
- ``\\ud800``-style escapes of unpaired UTF-16 surrogates: a ``str`` that cannot be encoded
  as UTF-8.

The routes of the store use :class:`StrictJSONRoute`, whose request refuses all of them
while parsing with a 422 in FastAPI's shape whose ``loc`` names the field
(``["body", "completions", 3, "prompt"]``), so a client can tell which row to set aside.
The check is paid only when a cheap scan of the raw bytes finds one of the few spellings
that can produce such a value; an ordinary batch is parsed exactly as before.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

# An escape of a UTF-16 surrogate; a high one followed by a low one is a pair (an emoji).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LOW_SURROGATE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


class NotStorable(ValueError):
    """A parsed JSON value holds something no column or response can carry."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(map(str, path)) or 'the body'}: {message}")
        self.path = path
        self.message = message


def loads_strict(body: bytes | str) -> Any:
    """``json.loads`` that raises :class:`NotStorable` (a ``ValueError``) naming the field
    of a non-finite number, a NUL character or an unpaired surrogate."""
    raw = body.encode() if isinstance(body, str) else body
    odd: list[str] = []

    def constant(name: str) -> float:  # NaN, Infinity, -Infinity
        odd.append(name)
        return float(name)

    def number(text: str) -> float:  # 1e400 is read as inf
        value = float(text)
        if not math.isfinite(value):
            odd.append(text)
        return value

    try:
        value = json.loads(raw, parse_constant=constant, parse_float=number)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise NotStorable((), str(exc)) from exc
    # The hooks only flag; the walk finds the field. NULs and lone surrogates are found in
    # the raw bytes first (a few ms for 10 MB), so an ordinary batch is never walked.
    if odd or b"\\u0000" in raw or _lone_surrogate(raw):
        check_storable(value)
    return value


def _lone_surrogate(raw: bytes) -> bool:
    """Whether ``raw`` may escape an unpaired surrogate (an escaped backslash before
    ``ud800`` is a false positive that the walk clears)."""
    paired = -1
    for m in _SURROGATE.finditer(raw):
        if m.start() == paired:
            continue
        if m[0][3:4] in b"89abAB" and _LOW_SURROGATE.match(raw, m.end()):
            paired = m.end()
            continue
        return True
    return False


def check_storable(value: Any, path: tuple[str | int, ...] = ()) -> None:
    """Raise :class:`NotStorable` at the first non-finite float, NUL or lone surrogate."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise NotStorable(where, "send a finite number (no NaN, Infinity or 1e400)")
        elif isinstance(item, str):
            _check_text(where, item)
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                _check_text((*where, key), key)
                stack.append(((*where, key), child))
        elif isinstance(item, list):
            stack.extend(((*where, i), child) for i, child in reversed(list(enumerate(item))))


def _check_text(where: tuple[str | int, ...], text: str) -> None:
    if "\x00" in text:
        raise NotStorable(where, "a string holds a NUL character (\\u0000); remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotStorable(where, "a string holds an unpaired UTF-16 surrogate") from None


def refusal(exc: NotStorable, *, prefix: tuple[str, ...] = ("body",)) -> HTTPException:
    """The 422 for ``exc``, shaped like FastAPI's validation errors."""
    detail = [{"loc": [*prefix, *exc.path], "msg": exc.message, "type": "value_error"}]
    return HTTPException(422, detail)


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_strict(await self.body())
            except NotStorable as exc:
                # An HTTPException is the one error FastAPI lets out of body parsing as it
                # is; anything else becomes a bare 400.
                raise refusal(exc) from exc
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
