"""The crowd's votes as arrays, and the aggregate's verdict on each line.

A *vote* is an annotator's newest 👍 (+1) / 👎 (-1) on one line of a completion, the same
labels the trainer aggregates: a rating marked ``own`` (the author on their own
completion) is no crowd vote and one marked ``superseded`` is replaced by a newer one.

The aggregate's verdict comes from the latest aggregation run when it recorded two-coin
parameters (em2: each annotator's sensitivity αⱼ and specificity βⱼ, and the class prior
``p`` in its metrics) or one-coin ones (``paper``, ``paper-l1``: reliability πⱼ, read as
αⱼ = βⱼ = πⱼ). Each line's posterior is recomputed from them with the E-step of
Dawid–Skene (``crlhf_trainer.aggregation.em2``) rather than read from the run's
``line_posteriors`` (migration 0007), which hold honeypot lines clamped to their truth and
exist only for rewarded completions of runs posted since:

    logit P(zᵢ = +1 | votes) = logit p + Σ_{j voted on i} wⱼ(yᵢⱼ)
    wⱼ(+1) = log αⱼ − log(1 − βⱼ)        wⱼ(−1) = log(1 − αⱼ) − log βⱼ

An annotator the run did not see (new since) weighs nothing. Honeypot lines are *not*
clamped to their truth here (em2 clamps them while fitting): the calibration view needs
what the crowd alone says about them. Without such a run (none yet, or a majority-vote
run) the verdict is the majority of the votes, and a tie has none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.models import AggregationRun, AnnotatorReliability, Completion, LineRating

__all__ = ["Verdicts", "Votes", "load_votes", "verdicts"]

EPS = 1e-6


@dataclass
class Votes:
    """One row per vote; ``line_of`` indexes ``lines`` (``(completion id, line)``)."""

    lines: list[tuple[uuid.UUID, int]]
    language: list[str]
    """Per line: its completion's language."""
    honeypot: np.ndarray
    """Per line: True for a line of a honeypot."""
    line_of: np.ndarray
    annotator: np.ndarray
    """Per vote: the annotator's id."""
    label: np.ndarray
    """Per vote: +1 or -1."""

    @property
    def n_lines(self) -> int:
        return len(self.lines)

    def counts(self) -> np.ndarray:
        """``(n_lines, 2)``: per line, the 👍 and the 👎 votes."""
        up = np.bincount(self.line_of, weights=self.label > 0, minlength=self.n_lines)
        down = np.bincount(self.line_of, weights=self.label < 0, minlength=self.n_lines)
        return np.stack([up, down], axis=1)


def load_votes(session: Session) -> Votes:
    """Every crowd vote in the store (the newest per annotator and line)."""
    rows = session.execute(
        select(
            LineRating.completion_id,
            LineRating.line,
            LineRating.annotator_id,
            LineRating.label,
            Completion.language,
            Completion.is_honeypot,
        )
        .join(Completion, Completion.id == LineRating.completion_id)
        .where(LineRating.own.is_(False), LineRating.superseded.is_(False))
        .order_by(LineRating.id)
    )
    newest: dict[tuple[uuid.UUID, int, int], int] = {}
    meta: dict[tuple[uuid.UUID, int], tuple[str, bool]] = {}
    for cid, line, annotator_id, label, language, is_honeypot in rows:
        newest[(cid, line, annotator_id)] = label
        meta[(cid, line)] = (language, is_honeypot)
    lines = sorted(meta, key=lambda k: (str(k[0]), k[1]))
    index = {key: i for i, key in enumerate(lines)}
    keys = list(newest)
    return Votes(
        lines=lines,
        language=[meta[k][0] for k in lines],
        honeypot=np.array([meta[k][1] for k in lines], dtype=bool),
        line_of=np.array([index[(c, ln)] for c, ln, _ in keys], dtype=np.int64),
        annotator=np.array([a for _, _, a in keys], dtype=np.int64),
        label=np.array([newest[k] for k in keys], dtype=np.int64),
    )


@dataclass
class Verdicts:
    """Per line: P(correct) (or the 👍 share under majority) and the verdict (+1/-1/0)."""

    p_correct: np.ndarray
    verdict: np.ndarray
    source: str
    """``em2 run #N`` (posteriors from that run's parameters) or ``majority``."""
    run_id: int | None


def _two_coin(session: Session, run: AggregationRun) -> dict[int, tuple[float, float]] | None:
    """annotator id → (α, β) of ``run``; None when it recorded no coins to weigh votes by.

    A one-coin run (``paper``: reliability π only) is the case α = β = π; a majority-vote
    run's π is agreement with the majority, no weight of its verdict, so it gives None.
    """
    if run.method == "mv":
        return None
    rows = session.execute(
        select(
            AnnotatorReliability.annotator_id,
            AnnotatorReliability.sensitivity,
            AnnotatorReliability.specificity,
            AnnotatorReliability.reliability,
        ).where(AnnotatorReliability.run_id == run.id)
    ).all()
    rows = [r for r in rows if r.annotator_id is not None]
    if rows and all(r.sensitivity is not None and r.specificity is not None for r in rows):
        return {r.annotator_id: (r.sensitivity, r.specificity) for r in rows}
    return {r.annotator_id: (r.reliability, r.reliability) for r in rows} or None


def verdicts(session: Session, votes: Votes) -> Verdicts:
    """The aggregate on each line of ``votes`` (see the module docstring for the math)."""
    run = session.scalar(select(AggregationRun).order_by(AggregationRun.id.desc()).limit(1))
    params = _two_coin(session, run) if run is not None else None
    if run is None or params is None:
        up, down = votes.counts().T
        share = np.divide(up, up + down, out=np.full(votes.n_lines, 0.5), where=up + down > 0)
        return Verdicts(share, np.sign(up - down).astype(np.int64), "majority", None)
    ids = np.array(sorted(params), dtype=np.int64)
    alpha = np.clip([params[i][0] for i in ids], EPS, 1 - EPS)
    beta = np.clip([params[i][1] for i in ids], EPS, 1 - EPS)
    w_up = np.log(alpha) - np.log1p(-beta)
    w_down = np.log1p(-alpha) - np.log(beta)
    pos = np.searchsorted(ids, votes.annotator)
    known = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == votes.annotator)
    pos = np.minimum(pos, len(ids) - 1)
    weight = np.where(votes.label > 0, w_up[pos], w_down[pos]) * known
    prior = float(np.clip((run.metrics or {}).get("class_prior", 0.5), EPS, 1 - EPS))
    logit = np.log(prior) - np.log1p(-prior)
    logit = logit + np.bincount(votes.line_of, weights=weight, minlength=votes.n_lines)
    q = 1.0 / (1.0 + np.exp(-logit))
    verdict = np.where(q > 0.5, 1, np.where(q < 0.5, -1, 0)).astype(np.int64)
    return Verdicts(q, verdict, f"{run.method} run #{run.id}", run.id)
