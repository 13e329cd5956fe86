"""The store's HTTP contract: the one definition of every payload on the wire.

crlhf-lsp, crlhf-train and the demo import these models instead of re-declaring them.
This module depends on pydantic and the standard library only, so the language server
can import it without installing the store's server dependencies.

Paths (all under ``/v1`` and behind ``Authorization: Bearer <token>``):

====================================  =========================  ==========================
method and path                       request                    response
====================================  =========================  ==========================
GET  /v1/me                           —                          :class:`Me`
POST /v1/completions                  :class:`CompletionBatch`   :class:`Stored`
POST /v1/events                       :class:`EventBatch`        :class:`Stored`
POST /v1/ratings                      :class:`RatingBatch`       :class:`Stored`
GET  /v1/review/next                  —                          :class:`ReviewTask` or 204
GET  /v1/labels/export                ?after=&limit=             :class:`LabelExport`
GET  /v1/completions/export           ?after=&limit=             :class:`CompletionExport`
GET  /v1/retention/export             ?after=&limit=             :class:`RetentionExport`
POST /v1/aggregation-runs             :class:`AggregationRunIn`  :class:`AggregationRunOut`
GET  /v1/aggregation-runs             ?limit=                    list[:class:`AggregationRunOut`]
POST /v1/adapters                     multipart (see below)      :class:`AdapterOut`
GET  /v1/adapters                     —                          list[:class:`AdapterOut`]
GET  /v1/adapters/latest              —                          :class:`AdapterOut` or 404
POST /v1/adapters/{version}/publish   —                          :class:`AdapterOut`
POST /v1/adapters/{version}/retire    —                          :class:`AdapterOut`
GET  /v1/adapters/{version}/download  ?artifact=peft|gguf        archive / file stream
====================================  =========================  ==========================

Adapter upload (multipart): ``files`` (one part per file of a PEFT adapter folder, the part's
filename is the file's name), form fields ``version``, ``parent`` (optional), ``base_model``,
``sha256`` (the folder digest of :func:`crlhf_contract.digest.folder_digest`), ``metrics``
(JSON object), and optionally ``gguf`` (a GGUF LoRA file) with its ``gguf_sha256``
(required with it). Files are safetensors weights or JSON/Markdown/text side files: a
pickle (``adapter_model.bin``, ``*.pt`` …) is refused with 422.

What the store refuses in any JSON body, with a 422 whose ``loc`` names the field: a
number that is not finite (``NaN``, ``Infinity``, ``1e400``), a string or key holding a
NUL character (``\\u0000``) or an unpaired UTF-16 surrogate. No database column or JSON
response can carry them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crlhf_contract.retention import (
    MAX_AFTER_S,
    MAX_RETAINED_LINES,
    RetainedLine,
)

Scope = Literal["annotator", "trainer", "admin"]
EventKind = Literal["shown", "accepted", "partial", "dismissed", "retained"]
"""``retained``: what became of the accepted lines, ``after_s`` seconds on
(:mod:`crlhf_contract.retention`)."""
AdapterStatus = Literal["candidate", "published", "retired"]
AnnotatorFlag = Literal["ok", "spammer", "adversary"]
Label = Literal[1, -1]

MAX_BATCH = 1000
"""Most rows in one posted batch; larger batches get a 422 naming the field."""
MAX_INT = 2**31 - 1
"""Largest count or line number the database columns hold (32-bit)."""
MAX_COMPLETION_TOKENS = 16_384
"""Most ``token_ids`` (and ``token_logprobs``) of one completion: far above any inline
completion (crlhf-lsp generates 64 by default), far below what would stall the trainer."""
MAX_PROMPT_TOKENS = 131_072
"""Most ``prompt_token_ids`` of one completion: the longest context of today's code models
(crlhf-lsp sends at most 1,536)."""
TOKEN_ID_END = 2**31
"""Token ids are integers (not true/false, not 1.0) in ``[0, TOKEN_ID_END)``: no vocabulary
comes near, and torch indexes embeddings with them."""
TokenId = Annotated[int, Field(strict=True, ge=0, lt=TOKEN_ID_END)]


def completion_lines(text: str) -> list[str]:
    """The lines of a completion's text as ratings number them (0-based).

    Split on ``\\n``; a trailing newline does not open an extra empty line, and an empty
    text is one empty line. Honeypot truth has one entry per line of this list.
    """
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Me(BaseModel):
    annotator: str
    scopes: list[Scope]


class Stored(BaseModel):
    """How many rows of a batch were new and how many had been stored before."""

    stored: int
    duplicates: int


# --- completions -------------------------------------------------------------------


class _CompletionText(BaseModel):
    """What a completion says: common to what is posted and what is exported."""

    id: UUID
    prompt: str
    suffix: str = ""
    language: str = Field(default="", max_length=64)
    text: str
    model: str = Field(max_length=512)
    adapter_version: str | None = Field(default=None, max_length=128)


class CompletionIn(_CompletionText):
    """One suggestion the model produced; ``id`` is chosen by the client (idempotency).

    ``token_ids`` (at most :data:`MAX_COMPLETION_TOKENS`) and ``prompt_token_ids`` (at most
    :data:`MAX_PROMPT_TOKENS`) hold ids in ``[0, 2**31)``; ``token_logprobs``, when given,
    has one entry per token id. Anything else is a 422 naming the field.
    """

    model_config = ConfigDict(extra="forbid")
    token_ids: list[TokenId] | None = Field(default=None, max_length=MAX_COMPLETION_TOKENS)
    token_logprobs: list[float] | None = Field(default=None, max_length=MAX_COMPLETION_TOKENS)
    prompt_token_ids: list[TokenId] | None = Field(default=None, max_length=MAX_PROMPT_TOKENS)

    @field_validator("token_logprobs")
    @classmethod
    def _one_logprob_per_token(
        cls, value: list[float] | None, info: ValidationInfo
    ) -> list[float] | None:
        # token_ids is validated first (field order); absent here when it was refused.
        if value is not None and "token_ids" in info.data:
            n_ids = len(info.data["token_ids"] or [])
            if len(value) != n_ids:
                raise ValueError(
                    f"{len(value)} log-probs for {n_ids} token ids: send one per token id, or none"
                )
        return value


class CompletionBatch(_Strict):
    completions: list[CompletionIn] = Field(max_length=MAX_BATCH)


class CompletionOut(_CompletionText):
    """A completion as the trainer exports it.

    The token fields are not bounded here: rows stored before the bounds existed are
    exported as they are, and the trainer skips (and counts) the ones it cannot use
    rather than failing a whole page. A log-prob stored as a non-finite number by an old
    store arrives as ``null``.
    """

    model_config = ConfigDict(extra="ignore")
    token_ids: list[int] | None = None
    token_logprobs: list[float | None] | None = None
    prompt_token_ids: list[int] | None = None
    annotator: str
    created_at: datetime
    seq: int


class CompletionExport(BaseModel):
    completions: list[CompletionOut]
    next: str | None


# --- events and ratings ------------------------------------------------------------


class EventIn(_Strict):
    """One event of a completion; ``after_s`` and ``lines`` with kind ``retained`` only
    (and then both required: :mod:`crlhf_contract.retention`)."""

    event_id: UUID
    completion_id: UUID
    kind: EventKind
    accepted_chars: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None
    after_s: Annotated[float, Field(ge=0, le=MAX_AFTER_S)] | None = Field(
        default=None, validate_default=True
    )
    lines: list[RetainedLine] | None = Field(
        default=None, max_length=MAX_RETAINED_LINES, validate_default=True
    )

    @field_validator("after_s", "lines")
    @classmethod
    def _retained_only(cls, value: object, info: ValidationInfo) -> object:
        retained = info.data.get("kind") == "retained"
        if retained and value is None:
            raise ValueError(f"a 'retained' event needs {info.field_name}")
        if not retained and value is not None and "kind" in info.data:
            raise ValueError(f"only a 'retained' event has {info.field_name}")
        if info.field_name == "lines" and value is not None:
            indices = [line.line for line in value]  # type: ignore[attr-defined]
            if len(set(indices)) < len(indices):
                raise ValueError("a line appears twice; send one entry per line")
        return value


class EventBatch(_Strict):
    events: list[EventIn] = Field(max_length=MAX_BATCH)


class RatingIn(_Strict):
    """One annotator's label on one line (0-based) of one completion's text."""

    event_id: UUID
    completion_id: UUID
    line: Annotated[int, Field(ge=0, le=MAX_INT)]
    label: Label


class RatingBatch(_Strict):
    ratings: list[RatingIn] = Field(max_length=MAX_BATCH)


# --- review queue and export -------------------------------------------------------


class ReviewTask(BaseModel):
    """A completion or a honeypot to rate; the two look exactly alike."""

    task_id: UUID
    completion_id: UUID
    language: str
    prompt: str
    text: str


class ExportedLabel(BaseModel):
    rating_id: int
    completion_id: UUID
    line: int
    annotator: str
    label: Label
    created_at: datetime
    own: bool = False
    """The annotator wrote the completion: their own signal, never a crowd vote."""
    superseded: bool = False
    """A newer rating of this annotator on this line counts instead (as of the export)."""


class LabelExport(BaseModel):
    labels: list[ExportedLabel]
    honeypots: dict[str, list[int]]
    """Per-line truth (1/-1) of the honeypots among this page's completions."""
    next: str | None


class HoneypotIn(_Strict):
    """One line of the honeypot import file (JSONL): code text plus per-line truth."""

    prompt: str = ""
    text: str
    language: str = Field(default="python", max_length=64)
    truth: list[Label]


# --- aggregation runs (posted by the trainer, shown by the dashboard) --------------


class AnnotatorReliabilityIn(_Strict):
    annotator: str = Field(max_length=128)
    reliability: float = Field(ge=0, le=1)
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)
    spammer_score: float = Field(ge=0, le=1)
    flag: AnnotatorFlag
    sensitivity: float | None = Field(default=None, ge=0, le=1)
    specificity: float | None = Field(default=None, ge=0, le=1)
    n_labels: int = Field(default=0, ge=0, le=MAX_INT)


class CompletionRewardIn(_Strict):
    completion_id: UUID
    reward: float = Field(ge=0, le=1)
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)
    line_posteriors: list[Annotated[float, Field(ge=0, le=1)]] | None = None
    """P(line correct) per line (``crlhf-store export-dataset`` writes them out); None from
    a trainer older than them."""


class AggregationRunIn(_Strict):
    method: str = Field(max_length=128)
    n_labels: int = Field(ge=0, le=MAX_INT)
    n_items: int = Field(ge=0, le=MAX_INT)
    annotators: list[AnnotatorReliabilityIn]
    rewards: list[CompletionRewardIn] = []
    metrics: dict[str, Any] = {}


class AggregationRunOut(BaseModel):
    id: int
    method: str
    n_labels: int
    n_items: int
    created_at: datetime


# --- adapters ----------------------------------------------------------------------


class AdapterArtifact(BaseModel):
    kind: Literal["peft", "gguf"]
    sha256: str
    size: int


class AdapterOut(BaseModel):
    version: str
    parent: str | None
    base_model: str
    sha256: str
    """Folder digest of the PEFT files (:func:`crlhf_contract.digest.folder_digest`)."""
    size: int
    status: AdapterStatus
    metrics: dict[str, Any]
    artifacts: list[AdapterArtifact] = []
    created_by: str | None = None
    created_at: datetime
    published_at: datetime | None = None
    signature: str | None = None
    """The trainer's Ed25519 signature of the version and digests (form field ``signature``
    of the upload; :mod:`crlhf_contract.signing`); None when it published unsigned."""


class ErrorOut(BaseModel):
    detail: Any
