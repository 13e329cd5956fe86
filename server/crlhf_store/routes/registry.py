"""Aggregation runs and the adapter registry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from crlhf_contract.schemas import AdapterOut, AdapterStatus, AggregationRunIn, AggregationRunOut
from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import StreamingResponse

from crlhf_store import adapters, aggregation_runs
from crlhf_store.deps import AnnotatorDep, Store, StoreDep, TrainerDep
from crlhf_store.errors import Invalid
from crlhf_store.routes import AUTH, BODY, CONFLICT, NOT_FOUND
from crlhf_store.strictjson import NotStorable, StrictJSONRoute, loads_strict

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)


@router.post(
    "/aggregation-runs",
    response_model=AggregationRunOut,
    tags=["aggregation"],
    responses=AUTH | BODY,
)
def post_aggregation_run(
    run: AggregationRunIn, principal: TrainerDep, store: StoreDep
) -> AggregationRunOut:
    """Record one aggregation: reliability per annotator, reward per completion; the review
    queue then serves first the completions whose reward is least certain."""
    s = store.settings
    with store.db.writing() as session:
        out = aggregation_runs.store_run(session, run=run, created_by=principal.name)
        aggregation_runs.route_reviews(
            session,
            run=run,
            redundancy_max=s.review_redundancy_max,
            certain_width=s.review_certain_width,
            rng=store.rng,
        )
        return out


@router.get(
    "/aggregation-runs",
    response_model=list[AggregationRunOut],
    tags=["aggregation"],
    responses=AUTH,
)
def list_aggregation_runs(
    principal: TrainerDep, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AggregationRunOut]:
    with store.db.reading() as session:
        return aggregation_runs.list_runs(session, limit=limit)


@router.post(
    "/adapters", response_model=AdapterOut, tags=["adapters"], responses=AUTH | BODY | CONFLICT
)
def upload_adapter(
    principal: TrainerDep,
    store: StoreDep,
    files: Annotated[list[UploadFile], File(description="one part per PEFT file")],
    version: Annotated[str, Form()],
    base_model: Annotated[str, Form(max_length=512)],
    sha256: Annotated[str, Form(description="folder digest (crlhf_contract.digest)")],
    parent: Annotated[str | None, Form()] = None,
    metrics: Annotated[str, Form(description="JSON object")] = "{}",
    gguf: Annotated[UploadFile | None, File(description="optional GGUF LoRA")] = None,
    gguf_sha256: Annotated[
        str | None, Form(description="sha256 of the gguf file; required with it")
    ] = None,
    signature: Annotated[
        str | None, Form(description="the trainer's base64 Ed25519 signature (optional)")
    ] = None,
) -> AdapterOut:
    """Upload a candidate adapter; a checksum mismatch is refused and stores nothing.

    Only safetensors weights and JSON/Markdown/text side files are accepted (no pickles);
    a ``gguf`` file needs its ``gguf_sha256``."""
    parts = [adapters.Part(name=f.filename or "", file=f.file) for f in files]
    gguf_part = adapters.Part(name=gguf.filename or "", file=gguf.file) if gguf else None
    adapters.check_form(
        version=version,
        sha256=sha256,
        files=parts,
        parent=parent or None,
        base_model=base_model,
        gguf=gguf_part,
        gguf_sha256=gguf_sha256,
    )
    metrics_obj = _json_object(metrics)
    adapters.check_signature(signature or None)
    staged = adapters.stage(
        store.storage, sha256=sha256, files=parts, gguf=gguf_part, gguf_sha256=gguf_sha256
    )
    try:
        with store.db.writing() as session:
            return adapters.register(
                session,
                store.storage,
                staged=staged,
                version=version,
                parent=parent or None,
                base_model=base_model,
                sha256=sha256,
                metrics=metrics_obj,
                created_by=principal.name,
                signature=signature or None,
            )
    finally:
        adapters.discard(store.storage, staged.key)


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = loads_strict(raw)
    except NotStorable as exc:
        raise Invalid(f"metrics: {exc}", loc=("body", "metrics", *exc.path)) from exc
    except ValueError as exc:
        raise Invalid(f"metrics is not JSON: {exc}", loc=("body", "metrics")) from exc
    if not isinstance(value, dict):
        raise Invalid("metrics must be a JSON object", loc=("body", "metrics"))
    return value


@router.get("/adapters", response_model=list[AdapterOut], tags=["adapters"], responses=AUTH)
def list_adapters(principal: AnnotatorDep, store: StoreDep) -> list[AdapterOut]:
    with store.db.reading() as session:
        return adapters.list_all(session)


@router.get(
    "/adapters/latest", response_model=AdapterOut, tags=["adapters"], responses=AUTH | NOT_FOUND
)
def latest_adapter(principal: AnnotatorDep, store: StoreDep) -> AdapterOut:
    """The most recently published adapter; 404 if none is published."""
    with store.db.reading() as session:
        return adapters.latest(session)


@router.post(
    "/adapters/{version}/publish",
    response_model=AdapterOut,
    tags=["adapters"],
    responses=AUTH | NOT_FOUND,
)
def publish_adapter(version: str, principal: TrainerDep, store: StoreDep) -> AdapterOut:
    return _set_status(store, version, "published", actor=principal.name)


@router.post(
    "/adapters/{version}/retire",
    response_model=AdapterOut,
    tags=["adapters"],
    responses=AUTH | NOT_FOUND,
)
def retire_adapter(version: str, principal: TrainerDep, store: StoreDep) -> AdapterOut:
    return _set_status(store, version, "retired", actor=principal.name)


def _set_status(store: Store, version: str, status: AdapterStatus, *, actor: str) -> AdapterOut:
    """Change an adapter's status; the registry records who did it."""
    with store.db.writing() as session:
        return adapters.set_status(session, version=version, status=status, actor=actor)


@router.get(
    "/adapters/{version}/download",
    tags=["adapters"],
    response_class=Response,
    responses=AUTH
    | NOT_FOUND
    | {
        200: {
            "description": "tar of the PEFT files, or the GGUF file; sha256 in X-Checksum-Sha256",
            "content": {"application/x-tar": {}, "application/octet-stream": {}},
        }
    },
)
def download_adapter(
    version: str,
    principal: AnnotatorDep,
    store: StoreDep,
    artifact: Literal["peft", "gguf"] = "peft",
) -> Response:
    with store.db.reading() as session:
        row = adapters.get(session, version=version)
        if artifact == "gguf":
            art = adapters.gguf_file(row)
            return StreamingResponse(
                store.storage.read(row.storage_key + adapters.GGUF, art.name),
                media_type="application/octet-stream",
                headers={
                    "X-Checksum-Sha256": art.sha256,
                    "Content-Disposition": f'attachment; filename="{art.name}"',
                },
            )
        key, digest, size = row.storage_key, row.archive_sha256, row.archive_size
    if digest is None or size is None:  # uploaded before the store kept archives: build it once
        with store.db.writing() as session:
            digest, size = adapters.peft_archive(
                session, store.storage, adapters.get(session, version=version)
            )
    return StreamingResponse(  # the archive stored at upload, chunk by chunk
        adapters.read_archive(store.storage, key),
        media_type="application/x-tar",
        headers={
            "X-Checksum-Sha256": digest,
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{row.version}.tar"',
        },
    )
