"""The store's domain errors; the HTTP edge (:mod:`crlhf_store.app`) maps them to statuses.

::

    StoreServerError
     ├── NotFound        404  the named thing does not exist
     ├── Conflict        409  it exists with other content (a completion id, a version)
     ├── Invalid         422  a row of a batch or a form field is wrong; ``loc`` names it
     │    └── ChecksumRefused   an adapter upload does not match its sha256
     └── TooMany         429  over a rate limit or quota; ``Retry-After`` says when to retry
"""

from __future__ import annotations

from typing import Any


class StoreServerError(Exception):
    """Base class of the store's own errors."""

    status = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, loc: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    def detail(self) -> Any:
        return self.message


class NotFound(StoreServerError):
    status = 404


class Conflict(StoreServerError):
    status = 409


class Invalid(StoreServerError):
    """A 422 in FastAPI's shape: ``[{"loc": [...], "msg": ..., "type": ...}]``."""

    status = 422

    def detail(self) -> Any:
        return [{"loc": list(self.loc), "msg": self.message, "type": "value_error"}]


class ChecksumRefused(Invalid):
    pass


class TooMany(StoreServerError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        self.headers = {"Retry-After": str(self.retry_after)}
