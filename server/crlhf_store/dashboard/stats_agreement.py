"""Agreement figure: Krippendorff's α over the rated lines (all, and per language), each
annotator's agreement with the aggregate, and pairwise agreement between annotators.

The votes and the aggregate's verdict are :mod:`crlhf_store.dashboard.votes`'s.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.dashboard.votes import Verdicts, Votes, load_votes, verdicts
from crlhf_store.models import Annotator

__all__ = [
    "AgreementStats",
    "Alpha",
    "AnnotatorAgreement",
    "PairAgreement",
    "agreement",
    "krippendorff_alpha",
]


def krippendorff_alpha(counts: np.ndarray) -> float | None:
    """Krippendorff's α, nominal, from a units × values matrix of counts.

    ``counts[u, c]`` is how many annotators gave unit ``u`` the value ``c`` (for lines:
    the 👍 and the 👎 votes). A unit with fewer than two values is not pairable and
    counts for nothing (missing values need no other handling). From the coincidence
    matrix (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):

        o_ck = Σ_u (n_uc · n_uk − [c = k] · n_uc) / (m_u − 1)      m_u = Σ_c n_uc ≥ 2
        n_c  = Σ_k o_ck        n = Σ_c n_c
        D_o  = Σ_{c≠k} o_ck / n            (observed disagreement, δ = 1 when c ≠ k)
        D_e  = Σ_{c≠k} n_c · n_k / (n (n − 1))   (expected by chance)
        α    = 1 − D_o / D_e

    α is 1 for perfect agreement, 0 for agreement at chance, negative below it; None when
    nothing is pairable or every pairable value is the same (D_e = 0).

    >>> round(krippendorff_alpha(np.array([[2, 0], [0, 2], [1, 1], [3, 0]])), 3)
    0.556
    """
    counts = np.asarray(counts, dtype=np.float64)
    m = counts.sum(axis=1)
    pairable = counts[m >= 2]
    if len(pairable) == 0:
        return None
    scaled = pairable / (m[m >= 2] - 1)[:, None]
    o = pairable.T @ scaled - np.diag(scaled.sum(axis=0))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    off = ~np.eye(len(n_c), dtype=bool)
    d_e = (np.outer(n_c, n_c)[off].sum()) / (n * (n - 1))
    if d_e == 0:
        return None
    d_o = o[off].sum() / n
    return float(1 - d_o / d_e)


class Alpha(BaseModel):
    language: str | None
    """None: over every rated line."""
    alpha: float | None
    pairable_lines: int
    """Lines with at least two votes (the only ones α can use)."""
    votes: int


class AnnotatorAgreement(BaseModel):
    annotator: str
    lines: int
    """Lines this annotator voted on that have a verdict."""
    agreement: float | None
    """Share of those where their vote is the verdict (their own vote is part of it)."""


class PairAgreement(BaseModel):
    a: str
    b: str
    co_rated: int
    """Lines both voted on."""
    agreement: float | None
    """Share of the co-rated lines on which they voted the same."""


class AgreementStats(BaseModel):
    verdict_source: str
    """``<method> run #N`` (posteriors from the latest run) or ``majority``."""
    lines: int
    votes: int
    alpha: Alpha
    languages: list[Alpha]
    annotators: list[AnnotatorAgreement]
    pairs: list[PairAgreement]
    """Every pair of annotators (a < b by name), co-rated or not."""


def _alpha(votes: Votes, counts: np.ndarray, language: str | None) -> Alpha:
    if language is None:
        rows, n_votes = counts, len(votes.label)
    else:
        mask = np.array([lang == language for lang in votes.language], dtype=bool)
        rows, n_votes = counts[mask], int(mask[votes.line_of].sum())
    return Alpha(
        language=language,
        alpha=krippendorff_alpha(rows),
        pairable_lines=int((rows.sum(axis=1) >= 2).sum()),
        votes=n_votes,
    )


def _with_aggregate(votes: Votes, v: Verdicts, names: dict[int, str]) -> list[AnnotatorAgreement]:
    has = v.verdict[votes.line_of] != 0
    agree = (votes.label == v.verdict[votes.line_of]) & has
    out = []
    for annotator_id in np.unique(votes.annotator):
        mine = votes.annotator == annotator_id
        n = int((mine & has).sum())
        out.append(
            AnnotatorAgreement(
                annotator=names.get(int(annotator_id), f"#{annotator_id}"),
                lines=n,
                agreement=float((mine & agree).sum() / n) if n else None,
            )
        )
    return sorted(out, key=lambda r: r.annotator)


def _pairs(votes: Votes, names: dict[int, str]) -> list[PairAgreement]:
    """Co-rated and agreeing lines of every pair: with U (👍) and D (👎) the lines ×
    annotators indicator matrices, co-rated = (U + D)ᵀ(U + D) and agreeing = UᵀU + DᵀD."""
    ids = np.unique(votes.annotator)
    col = np.searchsorted(ids, votes.annotator)
    up = np.zeros((votes.n_lines, len(ids)))
    down = np.zeros((votes.n_lines, len(ids)))
    up[votes.line_of[votes.label > 0], col[votes.label > 0]] = 1
    down[votes.line_of[votes.label < 0], col[votes.label < 0]] = 1
    both = up + down
    co, same = both.T @ both, up.T @ up + down.T @ down
    label = [names.get(int(i), f"#{i}") for i in ids]
    order = sorted(range(len(ids)), key=lambda k: label[k])
    out = []
    for x, i in enumerate(order):
        for j in order[x + 1 :]:
            n = int(co[i, j])
            out.append(
                PairAgreement(
                    a=label[i],
                    b=label[j],
                    co_rated=n,
                    agreement=float(same[i, j] / n) if n else None,
                )
            )
    return out


def agreement(session: Session) -> AgreementStats:
    """α over every line and per language; agreement with the aggregate and in pairs."""
    votes = load_votes(session)
    verdict = verdicts(session, votes)
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    counts = votes.counts()
    return AgreementStats(
        verdict_source=verdict.source,
        lines=votes.n_lines,
        votes=len(votes.label),
        alpha=_alpha(votes, counts, None),
        languages=[_alpha(votes, counts, lang) for lang in sorted(set(votes.language))],
        annotators=_with_aggregate(votes, verdict, names),
        pairs=_pairs(votes, names),
    )
