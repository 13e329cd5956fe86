"""Calibration figure: does the aggregate's P(correct) mean what it says, on the lines whose
truth is known (honeypot lines the crowd voted on)?

P(correct) ``q`` is the latest run's posterior recomputed without clamping honeypots (or,
without a two-coin run, the share of 👍; see :mod:`~crlhf_store.dashboard.votes`); ``y`` is
1 for a correct line, 0 for a wrong one. With ``bins`` equal-width bins B_b of [0, 1]:

    observed_b = mean of y over B_b       predicted_b = mean of q over B_b
    Brier = (1/N) Σ_i (q_i − y_i)²
    ECE   = Σ_b (|B_b| / N) · |observed_b − predicted_b|

(Expected Calibration Error: Naeini et al. 2015; the reliability diagram plots observed
against predicted per bin, the diagonal being perfect calibration.) The run's parameters
were fitted with these honeypots, so this is an in-sample check, a little optimistic.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.dashboard.votes import load_votes, verdicts
from crlhf_store.models import Honeypot

__all__ = ["CalibrationBin", "CalibrationStats", "calibration", "calibration_bins"]


class CalibrationBin(BaseModel):
    low: float
    high: float
    n: int
    predicted: float | None
    """Mean P(correct) of the bin's lines."""
    observed: float | None
    """Share of the bin's lines that are correct."""


class CalibrationStats(BaseModel):
    source: str
    """Where P(correct) came from: ``<method> run #N`` or ``majority`` (the 👍 share)."""
    lines: int
    """Honeypot lines with at least one vote."""
    brier: float | None
    ece: float | None
    bins: list[CalibrationBin]


def calibration_bins(
    q: np.ndarray, y: np.ndarray, bins: int = 10
) -> tuple[list[CalibrationBin], float | None, float | None]:
    """Reliability bins, Brier score and ECE of predictions ``q`` against outcomes ``y``.

    >>> q, y = np.array([0.05, 0.15, 0.95, 0.85]), np.array([0, 0, 1, 1])
    >>> b, brier, ece = calibration_bins(q, y, 2)
    >>> [x.n for x in b], round(brier, 4), round(ece, 2)
    ([2, 2], 0.0125, 0.1)
    """
    q, y = np.asarray(q, dtype=np.float64), np.asarray(y, dtype=np.float64)
    # bin b holds [b/bins, (b+1)/bins); q = 1 goes to the last bin
    which = np.minimum((q * bins).astype(np.int64), bins - 1)
    n = np.bincount(which, minlength=bins)
    sum_q = np.bincount(which, weights=q, minlength=bins)
    sum_y = np.bincount(which, weights=y, minlength=bins)
    out = [
        CalibrationBin(
            low=b / bins,
            high=(b + 1) / bins,
            n=int(n[b]),
            predicted=float(sum_q[b] / n[b]) if n[b] else None,
            observed=float(sum_y[b] / n[b]) if n[b] else None,
        )
        for b in range(bins)
    ]
    if len(q) == 0:
        return out, None, None
    brier = float(np.mean((q - y) ** 2))
    ece = float(np.abs(sum_y - sum_q).sum() / len(q))  # Σ_b |B_b|/N · |obs − pred|
    return out, brier, ece


def calibration(session: Session, *, bins: int = 10) -> CalibrationStats:
    """Aggregated P(correct) against honeypot truth, in ``bins`` bins."""
    votes = load_votes(session)
    verdict = verdicts(session, votes)
    truth = dict(session.execute(select(Honeypot.completion_id, Honeypot.truth)).all())
    keep, outcome = [], []
    for i in np.flatnonzero(votes.honeypot):
        cid, line = votes.lines[i]
        lines = truth.get(cid, [])
        if line < len(lines):
            keep.append(i)
            outcome.append(1.0 if lines[line] > 0 else 0.0)
    q = verdict.p_correct[np.array(keep, dtype=np.int64)]
    out, brier, ece = calibration_bins(q, np.array(outcome), bins)
    return CalibrationStats(source=verdict.source, lines=len(keep), brier=brier, ece=ece, bins=out)
