"""What became of an accepted completion's lines, ``delays`` seconds after the accept.

Issue 17's implicit per-line signal (:mod:`crlhf_contract.retention`). The lines are the
:class:`~crlhf_lsp.tracking.TrackedLine` objects the tracker already moves through every
``didChange``, so the keystroke path does nothing more for retention: when a check falls
due (an event-loop timer), each line's text now is compared with the accepted text once:

- ``unchanged``: the same text (trailing whitespace aside);
- ``deleted``: the tracker saw the line removed, or it is blank now;
- ``edited``: anything else, with the Levenshtein distance ``d(a, b)`` from the accepted
  text ``a`` to the text now ``b`` (:func:`edit_distance`) and, when at most
  :data:`~crlhf_contract.retention.MAX_CORRECTION_CHARS` long, the text now as the
  correction. Line 0 is compared without the document's text before the completion
  (``line_prefix``), so the pair is (completion line, what replaced it); an edit that
  reaches into that text sends no correction (what replaced the completion's part alone
  is unknown), its distance the whole line's.

A document that closes or becomes excluded before a check drops the checks still due: what
became of the lines afterwards is unknown, and an excluded document sends nothing.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from crlhf_contract.retention import MAX_CORRECTION_CHARS, RetainedLine
from crlhf_contract.schemas import EventIn

from crlhf_lsp.tracking import TrackedLine

DEFAULT_DELAYS = (30.0, 300.0)
MAX_DP_CELLS = 4_000_000
"""Longest comparison done exactly (|a|·|b| cells); longer lines get ``max(|a|, |b|)``."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions and
    substitutions turning ``a`` into ``b``.

    The textbook dynamic programme, one row at a time: ``D[i][j] = min(D[i-1][j] + 1,
    D[i][j-1] + 1, D[i-1][j-1] + [a_i ≠ b_j])``, ``D[i][0] = i``, ``D[0][j] = j``; O(|a|·|b|)
    time, O(|b|) memory. No edit-distance library is installed (rapidfuzz, Levenshtein) and
    a line is short; past :data:`MAX_DP_CELLS` the upper bound ``max(|a|, |b|)`` is returned.
    difflib's ratio is no distance (it counts matching blocks, not edits).
    """
    if a == b:
        return 0
    if len(a) * len(b) > MAX_DP_CELLS or not a or not b:
        return max(len(a), len(b))
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def line_state(t: TrackedLine, prefix: str = "") -> RetainedLine:
    """The verdict on one tracked line now (``prefix``: the document's text before the
    completion on its first line, left out of the comparison)."""
    original, now = t.original.rstrip(), t.text.rstrip()
    reaches_prompt = False
    if prefix and original.startswith(prefix):
        if now.startswith(prefix):
            original, now = original[len(prefix) :], now[len(prefix) :]
        else:
            # the edit reaches into the prompt's part of the line: what replaced the
            # completion's part alone is unknown, and the whole line sent as a correction
            # would be trained as a continuation of a prompt that already holds half of it
            reaches_prompt = True
            original = original[len(prefix) :]
    if t.deleted or not now.strip():
        return RetainedLine(line=t.index, state="deleted", distance=len(original))
    if now == original:
        return RetainedLine(line=t.index, state="unchanged")
    if reaches_prompt:
        distance = max(1, edit_distance(prefix + original, now))
        return RetainedLine(line=t.index, state="edited", distance=distance)
    correction = now if len(now) <= MAX_CORRECTION_CHARS else None
    distance = max(1, edit_distance(original, now))
    return RetainedLine(line=t.index, state="edited", distance=distance, correction=correction)


@dataclass
class Watch:
    """One accepted completion's lines and the checks still due."""

    uri: str
    lines: list[TrackedLine]
    prefix: str
    accepted_at: float
    left: set[float] = field(default_factory=set)


class Retention:
    """Checks due at ``accepted_at + delay`` for every watched completion."""

    def __init__(self) -> None:
        self.watches: dict[str, Watch] = {}
        self._due: list[tuple[float, int, str, float, float]] = []
        self._order = itertools.count()

    def watch(
        self,
        completion_id: str,
        uri: str,
        lines: list[TrackedLine],
        *,
        prefix: str,
        now: float,
        delays: Sequence[float],
    ) -> None:
        """Check ``lines`` ``delays`` seconds from ``now`` (a later accept of the same
        completion, a partial one grown, replaces the earlier watch)."""
        delays = sorted({float(d) for d in delays if d >= 0})
        if not lines or not delays:
            return
        self.watches[completion_id] = Watch(uri, lines, prefix, now, set(delays))
        for delay in delays:
            entry = (now + delay, next(self._order), completion_id, delay, now)
            heapq.heappush(self._due, entry)

    def forget(self, uri: str) -> None:
        for cid in [cid for cid, w in self.watches.items() if w.uri == uri]:
            del self.watches[cid]

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def due(self, now: float) -> tuple[list[EventIn], list[str]]:
        """The ``retained`` events due by ``now``, and the completions checked for the last
        time (their lines may stop being followed)."""
        events, finished = [], []
        while self._due and self._due[0][0] <= now:
            _, _, cid, delay, accepted_at = heapq.heappop(self._due)
            w = self.watches.get(cid)
            if w is None or w.accepted_at != accepted_at or delay not in w.left:
                continue  # forgotten, or a check of an earlier accept that was replaced
            w.left.discard(delay)
            lines = [line_state(t, w.prefix if t.index == 0 else "") for t in w.lines]
            events.append(
                EventIn(
                    event_id=uuid.uuid4(),
                    completion_id=uuid.UUID(cid),
                    kind="retained",
                    after_s=delay,
                    lines=lines,
                )
            )
            if not w.left:
                del self.watches[cid]
                finished.append(cid)
        return events, finished
