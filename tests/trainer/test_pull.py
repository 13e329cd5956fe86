"""Pulling from the store: every page saved, resumed from the cursor after a failure."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from crlhf_contract.client import StoreClient
from crlhf_trainer.errors import StoreGone
from crlhf_trainer.pull import WorkDir, pull

NOW = "2026-11-28T00:00:00Z"


class FakeStore:
    """Serves label and completion export pages; can fail from the n-th request on."""

    def __init__(self, n_label_pages: int = 3, fail_at: int | None = None) -> None:
        self.cids = [str(uuid.uuid4()) for _ in range(n_label_pages)]
        self.requests = 0
        self.fail_at = fail_at

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.fail_at is not None and self.requests >= self.fail_at:
            raise httpx.ConnectError("store gone")
        after = int(request.url.params.get("after", "0"))
        if request.url.path == "/v1/labels/export":
            if after >= len(self.cids):
                return httpx.Response(200, json={"labels": [], "honeypots": {}, "next": None})
            label = {
                "rating_id": after + 1,
                "completion_id": self.cids[after],
                "line": 0,
                "annotator": "alice",
                "label": 1,
                "created_at": NOW,
            }
            nxt = str(after + 1)
            return httpx.Response(200, json={"labels": [label], "honeypots": {}, "next": nxt})
        if request.url.path == "/v1/completions/export":
            if after >= len(self.cids):
                return httpx.Response(200, json={"completions": [], "next": None})
            c = {
                "id": self.cids[after],
                "prompt": "p",
                "text": "x",
                "model": "m",
                "annotator": "alice",
                "created_at": NOW,
                "seq": after + 1,
            }
            return httpx.Response(200, json={"completions": [c], "next": str(after + 1)})
        return httpx.Response(404)

    def client(self) -> StoreClient:
        return StoreClient("http://store", "t", transport=httpx.MockTransport(self.handler))


def test_pull_saves_every_page_then_stops(tmp_path):
    store = FakeStore(3)
    work = WorkDir(tmp_path)
    stats = pull(store.client(), work, page_size=1)
    assert (stats.labels, stats.completions) == (3, 3)
    assert len(work.label_pages()) == 3 and set(work.completions()) == set(store.cids)
    assert pull(store.client(), work).labels == 0  # nothing new


def test_a_store_that_disappears_mid_pull_is_resumed_from_the_cursor(tmp_path):
    work = WorkDir(tmp_path)
    broken = FakeStore(3, fail_at=3)
    with pytest.raises(StoreGone, match="re-run continues"):
        pull(broken.client(), work, page_size=1)
    assert len(work.label_pages()) == 2  # the two pages before the failure are kept
    assert json.loads(work.cursor_file.read_text())["labels"] == "2"
    healthy = FakeStore(3)
    healthy.cids = broken.cids
    stats = pull(healthy.client(), work, page_size=1)
    assert stats.labels == 1  # only the missing page
    assert len(work.label_pages()) == 3 and len(work.completions()) == 3


def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path):
    work = WorkDir(tmp_path)
    work.labels_file.write_text('{"labels": [], "honeypots": {}}\n{"labels": [')
    assert len(work.label_pages()) == 1
