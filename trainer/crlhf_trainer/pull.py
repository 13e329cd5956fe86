"""Pulling from the store: resumable, into the trainer's work dir.

Every export page is appended to a JSON-lines file in the work dir and only then is the
page's ``next`` cursor written (atomically) to ``cursor.json``; a store that disappears
mid-pull loses at most the page in flight, and the next run asks for the pages after the
last one saved. Labels are kept for ever (reliabilities are estimated from all of them),
so the work dir is the trainer's growing copy of the store. Retention events (issue 17's
implicit per-line signals) are pulled into ``retention.jsonl``, one row an event; a store
older than ``GET /v1/retention/export`` (404) simply has none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlhf_contract.client import StoreClient, StoreError, StoreRejected

from .errors import StoreGone

__all__ = ["Cursor", "PullStats", "WorkDir", "pull"]


@dataclass
class Cursor:
    """Where the next pull starts: the ``next`` of the last saved export page."""

    labels: str | None = None
    completions: str | None = None
    retention: str | None = None


@dataclass
class PullStats:
    labels: int = 0
    completions: int = 0
    retention: int = 0
    pages: int = 0


class WorkDir:
    """The trainer's folder: pulled pages, the cursor, adapters and reports."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def labels_file(self) -> Path:
        return self.root / "labels.jsonl"

    @property
    def completions_file(self) -> Path:
        return self.root / "completions.jsonl"

    @property
    def retention_file(self) -> Path:
        return self.root / "retention.jsonl"

    @property
    def cursor_file(self) -> Path:
        return self.root / "cursor.json"

    def cursor(self) -> Cursor:
        if not self.cursor_file.exists():
            return Cursor()
        return Cursor(**json.loads(self.cursor_file.read_text()))

    def save_cursor(self, cursor: Cursor) -> None:
        tmp = self.cursor_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(cursor.__dict__))
        os.replace(tmp, self.cursor_file)  # atomic: a crash leaves the old or the new cursor

    def label_pages(self) -> list[dict[str, Any]]:
        return list(_read_jsonl(self.labels_file))

    def retention_rows(self) -> list[dict[str, Any]]:
        """Every pulled ``retained`` event (:mod:`crlhf_contract.retention`), oldest first."""
        return list(_read_jsonl(self.retention_file))

    def completions(self) -> dict[str, dict[str, Any]]:
        """Every pulled completion by id (a re-pulled id keeps its newest copy)."""
        return {str(row["id"]): row for row in _read_jsonl(self.completions_file)}


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            # A line cut short by a crash mid-write has no newline; its page is re-pulled
            # because the cursor was not advanced past it.
            if line.endswith("\n"):
                yield json.loads(line)


def _append(path: Path, row: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pull(
    client: StoreClient,
    work: WorkDir,
    *,
    page_size: int = 1000,
    on_page: Callable[[str, int], None] | None = None,
) -> PullStats:
    """Fetch the label and completion pages after the saved cursor into ``work``."""
    stats = PullStats()
    cursor = work.cursor()
    try:
        while True:
            page = client.export_labels(cursor.labels, page_size)
            if not page.labels:
                break
            _append(work.labels_file, page.model_dump(mode="json", exclude={"next"}))
            stats.labels += len(page.labels)
            stats.pages += 1
            cursor.labels = page.next or cursor.labels
            work.save_cursor(cursor)
            if on_page:
                on_page("labels", len(page.labels))
            if page.next is None:
                break
        while True:
            cpage = client.export_completions(cursor.completions, page_size)
            if not cpage.completions:
                break
            for c in cpage.completions:
                _append(work.completions_file, c.model_dump(mode="json"))
            stats.completions += len(cpage.completions)
            stats.pages += 1
            cursor.completions = cpage.next or cursor.completions
            work.save_cursor(cursor)
            if on_page:
                on_page("completions", len(cpage.completions))
            if cpage.next is None:
                break
        _pull_retention(client, work, cursor, stats, page_size, on_page)
    except StoreError as exc:
        raise StoreGone(
            f"the store failed while pulling ({exc}); {stats.pages} page(s) were saved to "
            f"{work.root} and a re-run continues after them"
        ) from exc
    return stats


def _pull_retention(
    client: StoreClient,
    work: WorkDir,
    cursor: Cursor,
    stats: PullStats,
    page_size: int,
    on_page: Callable[[str, int], None] | None,
) -> None:
    while True:
        try:
            page = client.export_retention(cursor.retention, page_size)
        except StoreRejected as exc:
            if exc.status == 404:  # a store older than the retention export
                return
            raise
        if not page.retention:
            return
        for event in page.retention:
            _append(work.retention_file, event.model_dump(mode="json"))
        stats.retention += len(page.retention)
        stats.pages += 1
        cursor.retention = page.next or cursor.retention
        work.save_cursor(cursor)
        if on_page:
            on_page("retention", len(page.retention))
        if page.next is None:
            return
