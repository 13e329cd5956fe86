"""The adapter status history: who published or retired which adapter, and when."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.dashboard.models import AdapterStatusChange
from crlhf_store.models import Adapter


def record_status_change(session: Session, *, version: str, status: str, actor: str) -> None:
    """Append a change unless the adapter's last recorded change already says ``status``
    (publishing twice is one event)."""
    adapter_id = session.scalar(select(Adapter.id).where(Adapter.version == version))
    if adapter_id is None:
        return
    last = session.scalar(
        select(AdapterStatusChange.status)
        .where(AdapterStatusChange.adapter_id == adapter_id)
        .order_by(AdapterStatusChange.id.desc())
        .limit(1)
    )
    if last != status:
        session.add(AdapterStatusChange(adapter_id=adapter_id, status=status, actor=actor))
        session.flush()
