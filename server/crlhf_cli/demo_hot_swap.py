"""The demo's hot swap step: crlhf-lsp announcing the adapter the nightly run published,
how long the swap took, and how long after the store published it."""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any

from crlhf_contract.client import StoreClient

from crlhf_cli.lsp import LspDriver

__all__ = ["NOT_SWAPPED", "seconds_since_publish", "wait_for_swap"]

NOT_SWAPPED: dict[str, Any] = {"swapped": False, "ms": None, "seconds_after_publish": None}


def wait_for_swap(
    lsp: LspDriver, publish: dict[str, Any], *, since: float, store_url: str, token: str
) -> dict[str, Any]:
    """The swap of the adapter ``publish`` names, as crlhf-lsp announced it after ``since``."""
    got = lsp.wait_adapter(since, timeout=60)
    if got is None:  # a slow poll: ask for the check an editor's command runs
        asked = time.monotonic()
        lsp.command("crlhf.checkAdapter")
        got = lsp.wait_adapter(asked, timeout=60)
    if got is None:
        return dict(NOT_SWAPPED)
    _, wall, params = got
    return {
        "swapped": params.get("version") == publish.get("version"),
        "ms": round(float(params.get("seconds", 0.0)) * 1000, 1),
        "seconds_after_publish": seconds_since_publish(store_url, token, wall),
        "version": params.get("version"),
    }


def seconds_since_publish(store_url: str, token: str, wall: float) -> float | None:
    """How long after the store published the adapter crlhf-lsp announced the swap."""
    with StoreClient(store_url, token) as client:
        latest = client.latest_adapter()
    if latest is None or latest.published_at is None:
        return None
    published = latest.published_at
    if published.tzinfo is None:  # SQLite keeps naive UTC
        published = published.replace(tzinfo=UTC)
    return round(wall - published.timestamp(), 2)
