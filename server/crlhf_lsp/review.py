"""Review tasks: ``crlhf.nextReviewTask`` asks the store for the next completion to rate.

The reply is :class:`crlhf_contract.schemas.ReviewTask` as JSON (``task_id``, ``completion_id``,
``language``, ``prompt``, ``text``) plus ``completion_lines``, the count of
rateable lines, or ``null`` when the queue is empty. The client shows
``text`` read-only and rates its lines with ``crlhf.rate(completion_id, line, vote)``, line 0
being the first line of ``text``, exactly as for accepted completions. Honeypots look the
same; nothing here tells them apart.
"""

from __future__ import annotations

from typing import Any

from crlhf_contract.client import StoreClient
from crlhf_contract.protocol import ReviewTaskPayload
from crlhf_contract.schemas import completion_lines


def next_review_task(client: StoreClient) -> dict[str, Any] | None:
    task = client.review_next()
    if task is None:
        return None
    fields = task.model_dump(mode="json")
    payload = ReviewTaskPayload(**fields, completion_lines=len(completion_lines(task.text)))
    return payload.model_dump()
