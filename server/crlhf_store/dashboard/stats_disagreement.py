"""Disagreement figure: the lines the crowd disagrees on most, to read and, where an admin
knows the answer, to turn into honeypots (:func:`crlhf_store.honeypots.mint_from_line`).

Score of a line with ``k`` 👍 of ``n`` votes (honeypot lines are left out, their truth is
known):

    score = n · H(k / n)        H(p) = −p log₂ p − (1 − p) log₂ (1 − p)

the entropy of the votes (1 bit for an even split, 0 for a unanimous line) weighted by how
many voted, so a 3–3 split outranks a 1–1 one. Ties go to the line whose P(correct) (see
:mod:`~crlhf_store.dashboard.votes`) is closest to 0.5.
"""

from __future__ import annotations

import uuid

import numpy as np
from crlhf_contract.schemas import completion_lines
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.dashboard.votes import load_votes, verdicts
from crlhf_store.honeypots import line_honeypot, minted
from crlhf_store.models import Completion

__all__ = ["DisagreementStats", "DisputedLine", "disagreement", "vote_entropy"]


class DisputedLine(BaseModel):
    completion_id: uuid.UUID
    line: int
    language: str
    text: str
    """The line's code."""
    up: int
    down: int
    score: float
    """n · H(👍 share), in bits."""
    p_correct: float
    honeypot: bool
    """Already minted into a honeypot (this line, with its context)."""


class DisagreementStats(BaseModel):
    verdict_source: str
    lines: list[DisputedLine]


def vote_entropy(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """``n · H(up / n)`` per line, in bits (0 for a line without votes).

    >>> vote_entropy(np.array([1, 3, 4, 0]), np.array([1, 3, 0, 0])).tolist()
    [2.0, 6.0, 0.0, 0.0]
    """
    n = up + down
    p = np.divide(up, n, out=np.zeros(len(n)), where=n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = 0.0 - (
            np.where(p > 0, p * np.log2(p), 0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0)
        )
    return np.where(n > 0, n * h, 0.0)


def disagreement(session: Session, *, limit: int = 20) -> DisagreementStats:
    """The ``limit`` most disputed lines of the model's completions, worst first."""
    votes = load_votes(session)
    verdict = verdicts(session, votes)
    up, down = votes.counts().T
    score = vote_entropy(up, down)
    candidates = np.flatnonzero((score > 0) & ~votes.honeypot)
    closeness = np.abs(verdict.p_correct[candidates] - 0.5)
    order = candidates[np.lexsort((closeness, -score[candidates]))]  # the last key is primary
    top = order[:limit]
    ids = {votes.lines[i][0] for i in top}
    completions = (
        {c.id: c for c in session.scalars(select(Completion).where(Completion.id.in_(ids)))}
        if ids
        else {}
    )
    rows = []
    for i in top:
        cid, line = votes.lines[i]
        completion = completions[cid]
        text = completion_lines(completion.text)
        rows.append(
            DisputedLine(
                completion_id=cid,
                line=line,
                language=completion.language,
                text=text[line] if line < len(text) else "",
                up=int(up[i]),
                down=int(down[i]),
                score=float(score[i]),
                p_correct=float(verdict.p_correct[i]),
                honeypot=False,
            )
        )
    done = minted(session, [line_honeypot(completions[r.completion_id], r.line) for r in rows])
    for row, is_done in zip(rows, done, strict=True):
        row.honeypot = is_done
    return DisagreementStats(verdict_source=verdict.source, lines=rows)
