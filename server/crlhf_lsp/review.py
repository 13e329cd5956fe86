"""Review tasks: ``crlhf.nextReviewTask`` asks the store for the next completion to rate.

The reply is :class:`crlhf_store.schemas.ReviewTask` as JSON (``task_id``, ``completion_id``,
``language``, ``prompt``, ``text``), or ``null`` when the queue is empty. The client shows
``text`` read-only and rates its lines with ``crlhf.rate(completion_id, line, vote)``, line 0
being the first line of ``text``, exactly as for accepted completions. Honeypots look the
same; nothing here tells them apart.
"""

from __future__ import annotations

from typing import Any

from crlhf_store.client import StoreClient


def next_review_task(client: StoreClient) -> dict[str, Any] | None:
    task = client.review_next()
    return None if task is None else task.model_dump(mode="json")
