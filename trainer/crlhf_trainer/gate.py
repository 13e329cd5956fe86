"""The gate: publish a candidate adapter only when the evidence shows it does no harm.

Candidate and baseline (the published parent, or the base model) are evaluated on the
*same* held-out items, so each gated metric gives paired per-item values ``c_i`` and
``b_i``. The gate looks at their differences ``d_i = c_i − b_i`` (sign-flipped for a
metric where lower is better) and a paired bootstrap of their mean::

    Δ̂ = mean(d),   Δ*_b = mean(d[I_b]),  I_b ~ n indices drawn with replacement
    interval = [q_5(Δ*), q_95(Δ*)]                  (90 %, B = 4,000 resamples)

A metric passes when the lower end of its interval is above ``−margin``: even the
pessimistic end of what the data allow is no worse than a small, stated loss. Margins are
set relative to each metric's scale (:data:`DEFAULT_MARGINS`): 2 points for a share in
[0, 1] (pass@k, rewards), and a tenth of the baseline's per-item standard deviation for an
unbounded score such as a log-prob margin in nats/token.

The candidate is published only when every gated metric passes. It stays a candidate,
with a reason, when any metric shows harm (``refused``) or when the evidence is too thin
to tell (``not enough evidence``). A metric shows harm when its estimate is worse than the
margin or its whole interval lies below zero. The evidence is too thin with fewer than
``min_items`` paired items, with no gated metric at all (``--eval none``), or when the
interval is too wide to rule out a loss of the margin though it shows none (``unclear``:
24 guard prompts at 0.375 → 0.458 gave [−0.17, +0.33], a gain as likely as a loss).
``publish_without_evidence`` lets a team publish in those cases on purpose; harm is never
published.

The demo night of issue 13 — held-out reward 0.053 → 0.012 on 4 completions, published
by an absolute margin of 0.2 — is held back twice over: 4 items are too few to trust
(not enough evidence), and even a gate told to trust 4 items refuses it, the paired
interval of the drop lying below −0.02 (``tests/trainer/test_gate.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import TrainConfigError

__all__ = [
    "DEFAULT_MARGINS",
    "GateConfig",
    "GateDecision",
    "MetricCheck",
    "gate",
    "is_gated",
    "margin_for",
    "paired_interval",
]

Verdict = Literal["ok", "harm", "unclear", "too few"]
Decision = Literal["publish", "refused", "not enough evidence"]

DEFAULT_MARGINS: dict[str, float] = {
    "pass@": 0.02,  # shares of problems solved: 2 points
    "heldout/reward": 0.02,  # expected share of correct lines: 2 points
    "heldout/sound": 0.05,  # share of completions that parse and repeat no line: 5 points
}
"""Absolute margins of the metrics that are shares in [0, 1]."""
SD_MARGIN = 0.1
"""Any other gated metric (a log-prob margin, a team's own suite): × the baseline's sd."""

_LOWER_IS_BETTER = ("repetition",)


@dataclass(frozen=True)
class GateConfig:
    """How sure the gate must be (module docstring)."""

    confidence: float = 0.90  # of the two-sided paired interval
    min_items: int = 20  # paired items a metric needs before it can speak
    margin_scale: float = 1.0  # multiplies every DEFAULT_MARGINS entry
    publish_without_evidence: bool = False  # publish when the evidence is too thin
    resamples: int = 4000
    seed: int = 0

    def validate(self) -> GateConfig:
        if not 0.5 <= self.confidence < 1:
            raise TrainConfigError(f"gate confidence {self.confidence} must be in [0.5, 1)")
        if self.min_items < 1 or self.margin_scale < 0:
            raise TrainConfigError("gate min_items must be ≥ 1 and margin_scale ≥ 0")
        return self


@dataclass
class MetricCheck:
    """One gated metric, paired: means, the interval of candidate − baseline, the verdict."""

    name: str
    n: int
    baseline: float
    candidate: float
    delta: float
    low: float
    high: float
    margin: float
    verdict: Verdict

    def line(self) -> str:
        return (
            f"{self.name} {self.baseline:.4g} → {self.candidate:.4g} "
            f"(Δ {self.delta:+.4g}, 90% [{self.low:+.4g}, {self.high:+.4g}], n={self.n}, "
            f"margin {self.margin:.3g})"
        )

    def thin(self) -> str:
        """Why this metric cannot vouch for the candidate, or "" when it can."""
        if self.verdict == "too few":
            return f"{self.name} has {self.n} items"
        if self.verdict == "unclear":
            return f"{self.line()} cannot rule out a loss of {self.margin:.3g}"
        return ""


@dataclass
class GateDecision:
    decision: Decision
    checks: list[MetricCheck] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.decision == "publish"

    def reason(self) -> str:
        harm = [c for c in self.checks if c.verdict == "harm"]
        if harm:
            return "refused: harm on " + "; ".join(c.line() for c in harm)
        if self.decision == "not enough evidence":
            what = "; ".join(c.thin() for c in self.checks if c.thin()) or self.note
            return f"not enough evidence ({what})"
        ok = ", ".join(c.name for c in self.checks) or "nothing"
        extra = f" ({self.note})" if self.note else ""
        return f"no harm beyond the margins on {ok}{extra}"

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "passed": self.passed,
            "reason": self.reason(),
            "checks": [_finite(asdict(c)) for c in self.checks],
        }


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    # JSON (and the store) has no NaN: a metric with no items reports null means.
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in row.items()}


def is_gated(name: str) -> bool:
    """pass@k of every benchmark and every held-out metric (``heldout/…``)."""
    return "/pass@" in name or name.startswith("heldout/")


def margin_for(name: str, baseline_items: Sequence[float], scale: float = 1.0) -> float:
    """The allowed loss of ``name`` in its own units (module docstring)."""
    for key, absolute in DEFAULT_MARGINS.items():
        if key in name:
            return absolute * scale
    sd = float(np.std(baseline_items)) if len(baseline_items) > 1 else 0.0
    return SD_MARGIN * scale * sd


def paired_interval(
    deltas: Sequence[float], confidence: float = 0.90, resamples: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of the paired bootstrap of the mean difference.

    >>> m, lo, hi = paired_interval([0.1] * 10)
    >>> round(m, 3), round(lo, 3), round(hi, 3)
    (0.1, 0.1, 0.1)
    """
    d = np.asarray(deltas, dtype=float)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(low), float(high)


def _check(name: str, cand: Sequence[float], base: Sequence[float], cfg: GateConfig) -> MetricCheck:
    if len(cand) != len(base):
        raise TrainConfigError(
            f"{name}: {len(cand)} candidate vs {len(base)} baseline items; the gate compares "
            "the same items only (re-run the evaluation)"
        )
    sign = -1.0 if any(k in name for k in _LOWER_IS_BETTER) else 1.0
    deltas = sign * (np.asarray(cand, float) - np.asarray(base, float))
    delta, low, high = paired_interval(deltas, cfg.confidence, cfg.resamples, cfg.seed)
    margin = margin_for(name, base, cfg.margin_scale)
    verdict = _verdict(len(deltas), delta, low, high, margin, cfg.min_items)
    return MetricCheck(
        name=name,
        n=len(deltas),
        baseline=float(np.mean(base)) if len(base) else float("nan"),
        candidate=float(np.mean(cand)) if len(cand) else float("nan"),
        delta=delta,
        low=low,
        high=high,
        margin=margin,
        verdict=verdict,
    )


def _verdict(n: int, delta: float, low: float, high: float, margin: float, least: int) -> Verdict:
    """ok: even the interval's low end loses less than the margin; harm: the estimate loses
    more, or the whole interval is a loss; unclear: neither (too wide to tell)."""
    if n < least:
        return "too few"  # a handful of items says nothing either way: reported, not trusted
    if low >= -margin:
        return "ok"
    return "harm" if delta < -margin or high < 0 else "unclear"


def gate(
    candidate: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]],
    cfg: GateConfig | None = None,
) -> GateDecision:
    """Decide on per-item values of the gated metrics (module docstring).

    >>> good = gate({"mbpp/pass@1": [1, 1, 0] * 10}, {"mbpp/pass@1": [1, 0, 0] * 10})
    >>> good.decision, good.checks[0].verdict
    ('publish', 'ok')
    >>> gate({"mbpp/pass@1": [0, 0] * 10}, {"mbpp/pass@1": [1, 0] * 10}).decision
    'refused'
    >>> gate({}, {}).decision
    'not enough evidence'
    """
    cfg = (cfg or GateConfig()).validate()
    names = sorted(n for n in candidate.keys() & baseline.keys() if is_gated(n))
    checks = [_check(n, candidate[n], baseline[n], cfg) for n in names]
    if any(c.verdict == "harm" for c in checks):
        return GateDecision("refused", checks)
    thin = not checks or any(c.verdict in ("too few", "unclear") for c in checks)
    if thin and not cfg.publish_without_evidence:
        note = "" if checks else "no gated metric was evaluated (--eval none?)"
        return GateDecision("not enough evidence", checks, note)
    note = "published without enough evidence, as asked" if thin else ""
    return GateDecision("publish", checks, note)
