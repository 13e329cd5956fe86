"""Adapters figure: the registry as a timeline, pass@k before (the parent's) and after.

The status history is the registry's own (:func:`crlhf_store.adapters.set_status` records
it); this page only reads it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.models import Adapter, AdapterStatusChange

__all__ = ["AdapterRow", "GateCheck", "GateSummary", "PassAt", "StatusChange", "adapters"]


class PassAt(BaseModel):
    metric: str
    """A gated metric of the trainer: ``<benchmark>/pass@k`` or ``heldout/…``."""
    before: float | None
    """The parent adapter's value (the base model's for a first adapter, if recorded)."""
    after: float | None


class StatusChange(BaseModel):
    status: str
    actor: str
    at: datetime


class GateCheck(BaseModel):
    """One metric the trainer's gate compared, paired over ``n`` held-out items."""

    name: str
    n: int
    delta: float | None
    low: float | None  # 90% interval of candidate − baseline
    high: float | None
    verdict: str  # ok | harm | unclear | too few


class GateSummary(BaseModel):
    decision: str  # publish | refused | not enough evidence
    reason: str
    checks: list[GateCheck]


def _gate_summary(metrics: Any) -> GateSummary | None:
    """What the trainer recorded of its gate (``metrics["gate_decision"]``), if anything."""
    raw = metrics.get("gate_decision") if isinstance(metrics, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return GateSummary.model_validate(raw, strict=False)
    except ValueError:
        return None  # an older trainer's record: show the plain reason only


class AdapterRow(BaseModel):
    version: str
    parent: str | None
    base_model: str
    status: str
    created_at: datetime
    created_by: str | None
    published_at: datetime | None
    published_by: str | None
    pass_at: list[PassAt]
    history: list[StatusChange]
    gate: GateSummary | None = None
    gate_reason: str | None = None


def _gated(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if ("/pass@" in k or k.startswith("heldout/")) and isinstance(v, int | float):
            if k == "heldout/completions":
                continue  # a count, not a metric
            out[k] = float(v)
    return out


def adapters(session: Session) -> list[AdapterRow]:
    """Every adapter, oldest first, with its status history."""
    rows = list(session.scalars(select(Adapter).order_by(Adapter.id)))
    history: dict[int, list[StatusChange]] = defaultdict(list)
    for change in session.scalars(select(AdapterStatusChange).order_by(AdapterStatusChange.id)):
        history[change.adapter_id].append(
            StatusChange(status=change.status, actor=change.actor, at=change.created_at)
        )
    metrics = {r.version: _gated(r.metrics or {}) for r in rows}
    out = []
    for r in rows:
        after = metrics[r.version]
        baseline = r.metrics.get("baseline") if isinstance(r.metrics, dict) else None
        before = metrics.get(r.parent or "") or (
            _gated(baseline) if isinstance(baseline, dict) else {}
        )
        published = [c for c in history[r.id] if c.status == "published"]
        out.append(
            AdapterRow(
                version=r.version,
                parent=r.parent,
                base_model=r.base_model,
                status=r.status,
                created_at=r.created_at,
                created_by=r.created_by,
                published_at=r.published_at,
                published_by=published[-1].actor if published else None,
                pass_at=[
                    PassAt(metric=k, before=before.get(k), after=after.get(k))
                    for k in sorted(after.keys() | before.keys())
                ],
                history=history[r.id],
                gate=_gate_summary(r.metrics),
                gate_reason=(r.metrics or {}).get("gate") if isinstance(r.metrics, dict) else None,
            )
        )
    return out
