"""What the outbox (:mod:`crlhf_lsp.outbox`) sends and how it reads the store's answers: the
row kinds and their payload models, the HTTP call per kind, the rows a rejection names, and
one line for the status saying why the store cannot take rows now.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from crlhf_contract.client import StoreClient, StoreRejected, StoreUnavailable
from crlhf_contract.schemas import CompletionIn, EventIn, RatingIn

__all__ = [
    "FIELDS",
    "KINDS",
    "PROBLEMS",
    "TOKEN_REFUSED",
    "Kind",
    "describe",
    "parse_row",
    "post_rows",
    "rejected_rows",
]

Kind = Literal["completion", "event", "rating"]
KINDS: tuple[Kind, ...] = ("completion", "event", "rating")
FIELDS: dict[Kind, str] = {"completion": "completions", "event": "events", "rating": "ratings"}
"""The batch field of each kind, as the store's error locations name it."""

TOKEN_REFUSED = (401, 403)
"""Answers that judge the token (or the annotator's scope), whatever the network does."""
PROBLEMS = {
    401: "token refused (401): check the crlhf token setting",
    403: "access forbidden (403): the token lacks the annotator scope, or a proxy refuses it",
    404: "not found (404): check the crlhf storeUrl setting",
    408: "the store timed out (408)",
    429: "rate limited (429)",
}


def describe(exc: BaseException) -> str:
    """One line for the status: why the store cannot take rows now."""
    if isinstance(exc, StoreRejected):
        return PROBLEMS.get(exc.status, f"the store refused the request ({exc.status})")
    if isinstance(exc, StoreUnavailable) and exc.status is not None:
        return f"the store failed (HTTP {exc.status})"
    if isinstance(exc, StoreUnavailable):
        return f"store unreachable: {exc}"[:300]
    return f"outbox failure: {exc!r}"[:300]


_INDEXED = re.compile(r"\b(\w+)\[(\d+)\]")


def rejected_rows(detail: Any, field: str, size: int) -> set[int]:
    """Indices of the batch rows a store error names: a 422's ``loc`` (``["body", field,
    i, …]``) or the ``field[i]`` in a 409's message. Empty when it names none."""
    found: set[int] = set()
    if isinstance(detail, list):
        for error in detail:
            loc = error.get("loc") if isinstance(error, dict) else None
            if isinstance(loc, list) and field in loc:
                at = loc.index(field) + 1
                if at < len(loc) and isinstance(loc[at], int):
                    found.add(loc[at])
    elif isinstance(detail, str):
        found = {int(i) for name, i in _INDEXED.findall(detail) if name == field}
    return {i for i in found if 0 <= i < size}


MODELS: dict[Kind, type[CompletionIn] | type[EventIn] | type[RatingIn]] = {
    "completion": CompletionIn,
    "event": EventIn,
    "rating": RatingIn,
}


def parse_row(kind: Kind, payload: str) -> Any:
    return MODELS[kind].model_validate(json.loads(payload))


def post_rows(client: StoreClient, kind: Kind, payloads: list[str]) -> None:
    rows = [parse_row(kind, p) for p in payloads]
    if kind == "completion":
        client.post_completions(rows)
    elif kind == "event":
        client.post_events(rows)
    else:
        client.post_ratings(rows)
