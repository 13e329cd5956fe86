"""Accepted and retained characters per day and per adapter version (issue 17): the figure a
team watches to see whether a new adapter helps (Copilot's "accepted-and-retained
characters", rather than raw acceptance).

For each completion ``c`` of the model (honeypots never count) accepted in the window:

- **accepted lines** ``A_1 … A_n``: the lines of the accepted text, ``c``'s text or, for a
  partial accept, its first ``accepted_chars`` characters; of several accepts of ``c`` the
  largest counts (a partial accept grown, or completed by a full one). A partial accept
  without ``accepted_chars`` counts the whole text.
- **accepted characters** ``a_c = Σ_i |A_i|``, trailing blanks and line breaks left out
  (crlhf-lsp compares lines the same way).
- **retained characters**, from ``c``'s latest retention check (the largest ``after_s``:
  the 5-minute one by default, crlhf-lsp's ``retentionDelays``)::

      r_c = Σ_i  |A_i|                 line i unchanged
                 max(0, |A_i| − d_i)    line i edited, d_i its Levenshtein distance
                 0                      line i deleted, or not in the check

  ``|A_i| − d_i`` is the least number of the line's characters still in it: each edit
  touches at most one of them. A check never counts a line for more than it accepted.
- **checked characters**: ``a_c`` of the completions that have a retention check (the
  checks fall due 30 s and 5 min after the accept; a document closed before then has none,
  and a check not yet due is not a loss), and **retention** ``Σ r_c / Σ checked a_c``.

Days are UTC, by ``c``'s first accept in the window; the adapter version is the one that
wrote ``c`` (``base``: none, the base model alone).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crlhf_contract.schemas import completion_lines
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.models import Completion, CompletionEvent

__all__ = ["BASE", "RetentionRow", "RetentionStats", "retained_chars", "retention"]

BASE = "base"
"""The adapter version of completions the base model wrote alone."""


class RetentionRow(BaseModel):
    """Accepted and retained characters of one adapter version (on one day, or in all)."""

    adapter_version: str
    day: date | None = None
    """null in the per-version totals"""
    completions: int = 0
    """completions accepted"""
    accepted_chars: int = 0
    checked_chars: int = 0
    """accepted characters of the completions with a retention check"""
    retained_chars: int = 0
    retention: float | None = None
    """retained / checked characters; null before any check"""


class RetentionStats(BaseModel):
    days: list[date]
    """the window, oldest first"""
    versions: list[str]
    """adapter versions with an accept in the window, by their first accept (then name)"""
    per_day: list[RetentionRow]
    """one row per (day, version) with an accept, by day then version"""
    per_version: list[RetentionRow]
    """the window's totals of each version, in ``versions`` order"""


@dataclass
class _Accepted:
    version: str
    first: datetime
    text: str
    chars: int | None  # the largest accept's length; None: the whole text

    def lines(self) -> list[int]:
        """|A_i| of each accepted line."""
        shown = self.text if self.chars is None else self.text[: self.chars]
        return [len(line.rstrip()) for line in completion_lines(shown)]


def retained_chars(accepted: list[int], lines: Iterable[Mapping[str, Any]]) -> int:
    """``r_c`` of the module docstring: ``accepted`` the |A_i|, ``lines`` one check's.

    >>> retained_chars([10, 8, 5], [{"line": 0, "state": "unchanged"},
    ...     {"line": 1, "state": "edited", "distance": 3}, {"line": 2, "state": "deleted"}])
    15
    """
    kept = 0
    for line in lines:
        i = int(line["line"])
        if i >= len(accepted) or line["state"] == "deleted":
            continue
        distance = int(line.get("distance") or 0) if line["state"] == "edited" else 0
        kept += max(0, accepted[i] - distance)
    return kept


def _accepts(session: Session, since: datetime) -> dict[Any, _Accepted]:
    rows = session.execute(
        select(
            CompletionEvent.completion_id,
            CompletionEvent.kind,
            CompletionEvent.accepted_chars,
            CompletionEvent.created_at,
            Completion.adapter_version,
            Completion.text,
        )
        .join(Completion, Completion.id == CompletionEvent.completion_id)
        .where(
            CompletionEvent.kind.in_(("accepted", "partial")),
            CompletionEvent.created_at >= since,
            Completion.is_honeypot.is_(False),
        )
        .order_by(CompletionEvent.created_at, CompletionEvent.id)
    )
    out: dict[Any, _Accepted] = {}
    for cid, kind, chars, when, version, text in rows:
        whole = kind == "accepted" or chars is None
        a = out.setdefault(cid, _Accepted(version or BASE, when, text, 0))
        if a.chars is not None:
            a.chars = None if whole else max(a.chars, chars)
    return out


def _latest_checks(session: Session, since: datetime, ids: set[Any]) -> dict[Any, list]:
    """The lines of each completion's latest retention check (largest ``after_s``)."""
    rows = session.execute(
        select(CompletionEvent.completion_id, CompletionEvent.payload)
        .where(CompletionEvent.kind == "retained", CompletionEvent.created_at >= since)
        .order_by(CompletionEvent.created_at, CompletionEvent.id)
    )
    latest: dict[Any, tuple[float, list]] = {}
    for cid, payload in rows:
        if cid not in ids or not payload:
            continue
        after = float(payload.get("after_s") or 0.0)
        if cid not in latest or after >= latest[cid][0]:
            latest[cid] = (after, list(payload.get("lines") or []))
    return {cid: lines for cid, (_, lines) in latest.items()}


def _add(row: RetentionRow, accepted: int, retained: int | None) -> None:
    row.completions += 1
    row.accepted_chars += accepted
    if retained is not None:
        row.checked_chars += accepted
        row.retained_chars += min(accepted, retained)
    if row.checked_chars:
        row.retention = row.retained_chars / row.checked_chars


def retention(session: Session, *, days: int = 30, now: datetime | None = None) -> RetentionStats:
    """Per day (UTC, today included) and per adapter version over the last ``days`` days."""
    now = now or datetime.now(UTC)
    first = now.date() - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    accepts = _accepts(session, since)
    checks = _latest_checks(session, since, set(accepts))
    per_day: dict[tuple[date, str], RetentionRow] = {}
    per_version: dict[str, RetentionRow] = defaultdict(lambda: RetentionRow(adapter_version=""))
    for cid, a in sorted(accepts.items(), key=lambda kv: (kv[1].first, kv[1].version)):
        lengths = a.lines()
        kept = retained_chars(lengths, checks[cid]) if cid in checks else None
        day = a.first.date()
        key = (day, a.version)
        row = per_day.setdefault(key, RetentionRow(adapter_version=a.version, day=day))
        _add(row, sum(lengths), kept)
        total = per_version[a.version]
        total.adapter_version = a.version
        _add(total, sum(lengths), kept)
    return RetentionStats(
        days=[first + timedelta(days=i) for i in range(days)],
        versions=list(per_version),
        per_day=[per_day[k] for k in sorted(per_day, key=lambda k: (k[0], k[1]))],
        per_version=list(per_version.values()),
    )
