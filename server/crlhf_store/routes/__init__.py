"""The HTTP routes, one module per part of the API (see schemas.py for the table)."""

from __future__ import annotations

from typing import Any

from crlhf_contract.schemas import ErrorOut

AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, unknown or revoked token"},
    403: {"model": ErrorOut, "description": "the token lacks the scope"},
}
BODY: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "body over the size limit"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "not found"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "exists with other content"}
}
