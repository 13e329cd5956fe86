"""The dashboard's own rows (migration 0002): login sessions.

The adapter status history of the same migration is the registry's
(:class:`crlhf_store.models.AdapterStatusChange`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from crlhf_store.models import Base, UtcDateTime


class DashboardSession(Base):
    """A dashboard login; the cookie holds a random id, this row only its sha256."""

    __tablename__ = "dashboard_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), nullable=False)
    csrf: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, server_default=func.now(), nullable=False
    )
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
