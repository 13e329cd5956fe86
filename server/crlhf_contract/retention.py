"""Implicit per-line signals: what became of an accepted completion's lines (issue 17).

Most developers rarely press 👎, but every one of them edits. ``after_s`` seconds after an
accept (30 s and 5 min by default, crlhf-lsp's ``retentionDelays``), crlhf-lsp posts one
event of kind ``retained`` (``POST /v1/events``) for the completion, with one entry per
non-blank accepted line:

=============  =====================================================================
``line``       the line's index in the completion's text (0-based, as ratings count)
``state``      ``unchanged`` (its text is the accepted text), ``edited`` (changed but
               still there) or ``deleted`` (removed, or left blank)
``distance``   the Levenshtein distance (characters) from the accepted text to the
               line now; 0 when unchanged, the accepted line's length when deleted
``correction`` ``edited`` only, optional: what the developer wrote instead (at most
               :data:`MAX_CORRECTION_CHARS` characters; longer rewrites send none, nor
               does an edit of line 0 that reaches into the text before the completion)
=============  =====================================================================

The store refuses (422 naming the field) a ``retained`` event without ``after_s`` and
``lines``, another kind with them, a line twice, a line past the completion's end, an
``unchanged`` line with a distance or correction, a ``deleted`` one with a correction, or
a ``retained`` event on a completion that is not the poster's own (only its author's
editor sees what became of it). ``GET /v1/retention/export`` gives them to the trainer,
each line with the completion's own text of it (``original``): with ``correction``, the
(completion line, replacement) pair of an expected edit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

RetentionState = Literal["unchanged", "edited", "deleted"]
MAX_CORRECTION_CHARS = 500
"""Longest correction kept: a line's rewrite, not a pasted file."""
MAX_RETAINED_LINES = 1000
"""Most lines in one retention event."""
MAX_AFTER_S = 7 * 24 * 3600.0
"""Latest check after an accept the store takes: a week."""

_MAX_INT = 2**31 - 1


class RetainedLine(BaseModel):
    """What became of one accepted line ``after_s`` seconds after the accept."""

    model_config = ConfigDict(extra="forbid")
    line: Annotated[int, Field(ge=0, le=_MAX_INT)]
    state: RetentionState
    distance: Annotated[int, Field(ge=0, le=_MAX_INT)] = 0
    correction: str | None = Field(default=None, max_length=MAX_CORRECTION_CHARS)

    @model_validator(mode="after")
    def _consistent(self) -> RetainedLine:
        if self.state == "unchanged" and (self.distance or self.correction is not None):
            raise ValueError("an unchanged line has distance 0 and no correction")
        if self.state == "deleted" and self.correction is not None:
            raise ValueError("a deleted line has no correction")
        if self.state == "edited" and self.distance == 0:
            raise ValueError("an edited line has a distance of at least 1")
        return self


class ExportedRetainedLine(RetainedLine):
    original: str
    """The completion's text of this line (the store's copy)."""


class ExportedRetention(BaseModel):
    """One ``retained`` event as the trainer reads it."""

    event_id: UUID
    completion_id: UUID
    annotator: str
    after_s: float
    lines: list[ExportedRetainedLine]
    created_at: datetime
    seq: int


class RetentionExport(BaseModel):
    retention: list[ExportedRetention]
    next: str | None
