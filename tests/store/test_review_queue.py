"""The review queue serves every completion to ``review_redundancy`` annotators.

Regression: the reviewer count was not correlated to the candidate completion, so once any
three annotators had rated or been served anything, no completion was served again.
"""

from __future__ import annotations

import uuid

from crlhf_contract.schemas import CompletionIn


def test_each_completion_reaches_redundancy_reviewers(live_store) -> None:  # type: ignore[no-untyped-def]
    first, second = uuid.uuid4(), uuid.uuid4()
    with live_store.client() as alice:
        alice.post_completions(
            [CompletionIn(id=cid, prompt="p", text="x = 1\n", model="m") for cid in (first, second)]
        )
    clients = {name: live_store.client(live_store.new_token(name)) for name in "bcde"}
    try:
        # three annotators take one task each: the same completion, now fully served
        served = {clients[n].review_next().completion_id for n in "bcd"}  # type: ignore[union-attr]
        assert len(served) == 1 and served <= {first, second}
        second = ({first, second} - served).pop()
        task = clients["e"].review_next()
        assert task is not None and task.completion_id == second
        for name in "bc":
            task = clients[name].review_next()
            assert task is not None and task.completion_id == second
        assert all(clients[n].review_next() is None for n in "bcde")  # both served 3 times
    finally:
        for client in clients.values():
            client.close()
