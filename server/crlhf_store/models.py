"""SQLAlchemy 2 typed ORM models of the store; Alembic migrations mirror them.

Names follow the glossary (DESIGN.md): annotator, completion, line rating, honeypot,
review task (``review_assignments``), adapter, aggregation run. The wire schemas
(:mod:`crlhf_contract.schemas`) are separate: these are rows, those are payloads.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    Uuid,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None and dialect.name == "sqlite":
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


def _now() -> Any:
    return mapped_column(UtcDateTime, server_default=func.now(), nullable=False)


class Annotator(Base):
    __tablename__ = "annotators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    created_at: Mapped[datetime] = _now()
    review_next_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The kind of review task drawn for this annotator's next one (see review.py)."""

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="annotator")


class ApiToken(Base):
    """Only the sha256 of a token is stored (tokens are 256-bit random, see auth.py)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    scope: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    annotator: Mapped[Annotator] = relationship(back_populates="tokens")


class Completion(Base):
    """A suggestion of the model (or a honeypot's code, then ``annotator_id`` is null).

    ``seq`` is the export position, stamped only after the row committed (see export.py).
    """

    __tablename__ = "completions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), nullable=True)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    suffix: Mapped[str] = mapped_column(Text, nullable=False, default="")
    language: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    text: Mapped[str] = mapped_column(Text, nullable=False)
    n_lines: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[str] = mapped_column(String(512), nullable=False)
    adapter_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    token_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    token_logprobs: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    prompt_token_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    is_honeypot: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    created_at: Mapped[datetime] = _now()
    review_assigned: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    """Annotators (its author aside) holding or having answered a review task of it."""
    review_target: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """How many it should get; NULL: the store's ``review_redundancy``."""
    review_priority: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    """Higher is served first (the width of its reward interval, see aggregation_runs)."""

    __table_args__ = (
        Index(
            "ix_completions_unsequenced",
            "id",
            sqlite_where=seq.is_(None),
            postgresql_where=seq.is_(None),
        ),
        Index("ix_completions_annotator", "annotator_id"),
    )


class CompletionEvent(Base):
    __tablename__ = "completion_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, nullable=False)
    completion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("completions.id"), nullable=False)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    accepted_chars: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = _now()
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    """A ``retained`` event's ``after_s`` and ``lines`` (crlhf_contract.retention); else NULL."""
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    """The export position of a ``retained`` event (see export.py); NULL for other kinds."""

    __table_args__ = (
        Index("ix_completion_events_completion", "completion_id"),
        Index(
            "ix_completion_events_unsequenced",
            "id",
            sqlite_where=(kind == "retained") & seq.is_(None),
            postgresql_where=(kind == "retained") & seq.is_(None),
        ),
    )


class LineRating(Base):
    """One annotator's label on one line; history kept, the newest per (annotator, line) counts.

    ``seq`` is the export position, stamped only after the row committed (see export.py).
    """

    __tablename__ = "line_ratings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, nullable=False)
    completion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("completions.id"), nullable=False)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), nullable=False)
    line: Mapped[int] = mapped_column(Integer, nullable=False)
    label: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    created_at: Mapped[datetime] = _now()
    own: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    """The annotator wrote the completion: their own signal, never a crowd vote."""
    superseded: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    """A newer rating of the same annotator on the same line counts instead."""

    __table_args__ = (
        Index("ix_line_ratings_completion_annotator", "completion_id", "annotator_id"),
        Index("ix_line_ratings_annotator", "annotator_id"),
        Index("ix_line_ratings_annotator_created", "annotator_id", "created_at"),
        Index(
            "ix_line_ratings_unsequenced",
            "id",
            sqlite_where=seq.is_(None),
            postgresql_where=seq.is_(None),
        ),
    )


class Honeypot(Base):
    """Per-line truth of a honeypot completion; never shown to annotators."""

    __tablename__ = "honeypots"

    completion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("completions.id"), primary_key=True)
    truth: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = _now()


class ReviewAssignment(Base):
    """A review task served to an annotator (its id is the task's ``task_id``).

    It holds a slot of its completion until answered; skipped (``released_at``) or not
    answered by ``expires_at`` it gives the slot back.
    """

    __tablename__ = "review_assignments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), nullable=False)
    completion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("completions.id"), nullable=False)
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        Index("ix_review_assignments_annotator_completion", "annotator_id", "completion_id"),
        Index("ix_review_assignments_completion", "completion_id"),
        Index(
            "ix_review_assignments_open",
            "expires_at",
            sqlite_where=released_at.is_(None) & answered_at.is_(None),
            postgresql_where=released_at.is_(None) & answered_at.is_(None),
        ),
    )


class Adapter(Base):
    __tablename__ = "adapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    parent: Mapped[str | None] = mapped_column(String(128), nullable=True)
    base_model: Mapped[str] = mapped_column(String(512), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    storage_key: Mapped[str] = mapped_column(String(256), nullable=False)
    files: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False)
    """``{file name: sha256}`` of the PEFT folder."""
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="candidate")
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    signature: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The trainer's base64 Ed25519 signature (crlhf_contract.signing); not verified here."""
    archive_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    archive_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The download's tar, built once (at upload) and stored under ``<version>@tar``; NULL
    until then for an adapter uploaded before 0006 (its first download builds it)."""

    artifacts: Mapped[list[AdapterArtifactRow]] = relationship(
        back_populates="adapter", order_by="AdapterArtifactRow.kind", lazy="selectin"
    )


class AdapterArtifactRow(Base):
    """An extra file of an adapter besides its PEFT folder (today: a GGUF LoRA)."""

    __tablename__ = "adapter_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)

    adapter: Mapped[Adapter] = relationship(back_populates="artifacts")


class AdapterStatusChange(Base):
    """Who published or retired an adapter, and when (migration 0002; the registry records
    it in :func:`crlhf_store.adapters.set_status`, the dashboard charts it)."""

    __tablename__ = "adapter_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, server_default=func.now(), nullable=False
    )

    __table_args__ = (Index("ix_adapter_status_changes_adapter", "adapter_id"),)


class AggregationRun(Base):
    """One aggregation of the trainer: reliabilities per annotator, rewards per completion."""

    __tablename__ = "aggregation_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method: Mapped[str] = mapped_column(String(128), nullable=False)
    n_labels: Mapped[int] = mapped_column(Integer, nullable=False)
    n_items: Mapped[int] = mapped_column(Integer, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = _now()


class AnnotatorReliability(Base):
    __tablename__ = "annotator_reliabilities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("aggregation_runs.id"), nullable=False)
    annotator: Mapped[str] = mapped_column(String(128), nullable=False)
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), nullable=True)
    reliability: Mapped[float] = mapped_column(Float, nullable=False)
    low: Mapped[float] = mapped_column(Float, nullable=False)
    high: Mapped[float] = mapped_column(Float, nullable=False)
    spammer_score: Mapped[float] = mapped_column(Float, nullable=False)
    flag: Mapped[str] = mapped_column(String(16), nullable=False)
    sensitivity: Mapped[float | None] = mapped_column(Float, nullable=True)
    specificity: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_labels: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (Index("ix_annotator_reliabilities_run", "run_id"),)


class CompletionReward(Base):
    __tablename__ = "completion_rewards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("aggregation_runs.id"), nullable=False)
    completion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("completions.id"), nullable=False)
    reward: Mapped[float] = mapped_column(Float, nullable=False)
    low: Mapped[float] = mapped_column(Float, nullable=False)
    high: Mapped[float] = mapped_column(Float, nullable=False)
    line_posteriors: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    """P(line correct) per line (migration 0007; NULL from an older trainer)."""

    __table_args__ = (
        Index("ix_completion_rewards_run", "run_id"),
        Index("ix_completion_rewards_completion", "completion_id"),
    )
