"""Issue 17 end to end: a real crlhf-lsp over stdio (the tiny model) and a real store. A
3-line completion is accepted; the developer keeps one line, rewrites one and deletes one;
at each of the (tiny) retention delays crlhf-lsp sends a ``retained`` event that the store's
``GET /v1/retention/export`` gives the trainer as ``crlhf_contract.retention`` says, the
rewrite as the correction of the completion's line, and the trainer's pull turns it into
labels of ``implicit:alice``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from crlhf_contract.client import StoreClient
from crlhf_lsp.retention import edit_distance
from crlhf_trainer.aggregation.implicit import implicit_records
from crlhf_trainer.pull import WorkDir, pull
from lsp_harness import command, edit, inline, lsp_session, open_doc, settings_for, wait_until

URI = "file:///work/reverse.py"
SOURCE = "def reverse(items):\n    "  # the tiny model answers with 3 non-blank lines
REWRITE = "    x = 0"


def _retention(store: Any) -> list[dict[str, Any]]:
    with StoreClient(store.url, store.trainer_token) as client:
        return [e.model_dump(mode="json") for e in client.export_retention().retention]


@pytest.mark.slow  # 10-20 s
async def test_kept_edited_and_deleted_lines_reach_the_store_as_retention(
    tmp_path: Path, tiny_model: Path, live_store: Any
) -> None:
    settings = settings_for(
        tmp_path,
        tiny_model,
        storeUrl=live_store.url,
        token=live_store.annotator_token,
        retentionDelays=[1.0, 2.0],
    )
    async with lsp_session(settings) as client:
        open_doc(client, URI, SOURCE)
        [item] = await inline(client, URI, 1, 4)
        text, cid = item.insert_text, item.command.arguments[0]
        completion = text.split("\n")
        kept, rewritten, deleted = [i for i, line in enumerate(completion) if line.strip()][:3]
        doc = (SOURCE + text).split("\n")  # completion line i is document line 1 + i
        edit(client, URI, 2, (1, 4), (1, 4), text)
        await command(client, "crlhf.accepted", cid)
        r = 1 + rewritten
        edit(client, URI, 3, (r, 0), (r, len(doc[r])), REWRITE)
        doc[r] = REWRITE
        d = 1 + deleted
        edit(client, URI, 4, (d - 1, len(doc[d - 1])), (d, len(doc[d])), "")
        events = await wait_until(
            lambda: asyncio.to_thread(lambda: len(got := _retention(live_store)) == 2 and got),
            timeout=60,
        )
    assert [(e["completion_id"], e["annotator"], e["after_s"]) for e in events] == [
        (cid, "alice", 1.0),
        (cid, "alice", 2.0),
    ]
    by_line = {line["line"]: line for line in events[0]["lines"]}
    assert set(by_line) >= {kept, rewritten, deleted}
    assert by_line[kept] == {
        "line": kept,
        "state": "unchanged",
        "distance": 0,
        "correction": None,
        "original": completion[kept],
    }
    assert by_line[rewritten] == {
        "line": rewritten,
        "state": "edited",
        "distance": edit_distance(completion[rewritten], REWRITE),
        "correction": REWRITE,  # the expected edit of the completion's line
        "original": completion[rewritten],
    }
    assert by_line[deleted] == {
        "line": deleted,
        "state": "deleted",
        "distance": len(completion[deleted].rstrip()),
        "correction": None,
        "original": completion[deleted],
    }

    # The trainer pulls it; the developer's verdicts become implicit:alice's labels.
    work = WorkDir(tmp_path / "work")
    with StoreClient(live_store.url, live_store.trainer_token) as trainer:
        assert pull(trainer, work).retention == 2
    labels = {item: y for item, who, y in implicit_records(work.retention_rows())}
    assert labels[f"{cid}:{kept}"] == 1 and labels[f"{cid}:{deleted}"] == -1
