"""The adapter registry: upload (checked), publish, retire, list, download.

Checksum: ``sha256`` of an upload is the folder digest of its PEFT files
(:func:`crlhf_contract.digest.folder_digest`: the sha256 of the sorted ``sha256sum``
manifest). The store recomputes it while writing the files to a staging key; a mismatch
is refused with 422 and the staged files are deleted. The download is the deterministic
tar of the files (the bytes of :func:`crlhf_contract.digest.tar_of`), its own sha256 in
``X-Checksum-Sha256``: built once at upload, streamed from a temporary file into storage
(key ``<version>@tar``) with its digest and size in the registry row, then streamed to each
download, so neither an upload nor a download holds an adapter in memory. An adapter
uploaded before the archive was kept gets it built (the same way) on its first download.

Only files that load without running code are accepted: weights as safetensors, side
files as JSON, Markdown, text, SentencePiece models or Jinja templates
(:data:`ALLOWED_SUFFIXES`). ``adapter_model.bin``, ``*.pt``, ``*.pth``, ``*.pkl``,
``*.ckpt`` … are pickles that ``torch.load`` (PEFT's fallback) would execute on every
machine that loads the adapter; they are refused with 422. A GGUF artifact comes with its
``gguf_sha256``, which is checked (an upload without it is refused).
"""

from __future__ import annotations

import contextlib
import re
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, BinaryIO

from crlhf_contract.digest import manifest_digest
from crlhf_contract.schemas import AdapterArtifact, AdapterOut
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crlhf_store.errors import ChecksumRefused, Conflict, Invalid, NotFound
from crlhf_store.models import Adapter, AdapterArtifactRow, AdapterStatusChange
from crlhf_store.storage import AdapterStorage

VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
GGUF = "@gguf"  # suffix of the storage key holding an adapter's GGUF file
ARCHIVE = "@tar"  # suffix of the storage key holding the download's tar of the PEFT files
ARCHIVE_NAME = "peft.tar"
ALLOWED_SUFFIXES = (".safetensors", ".json", ".md", ".txt", ".model", ".jinja")
"""File types an adapter folder may hold: none of them is read by unpickling."""


@dataclass
class Part:
    """One uploaded file: its name and a readable binary stream."""

    name: str
    file: BinaryIO


@dataclass
class Staged:
    key: str
    files: dict[str, str]
    size: int
    gguf: tuple[str, str, int] | None = None
    """(name, sha256, size) of the GGUF artifact, if one came along."""
    archive: tuple[str, int] | None = None
    """(sha256, size) of the download's tar, stored under ``key + ARCHIVE``."""
    extra: dict[str, Any] = field(default_factory=dict)


def _invalid(msg: str, *loc: Any) -> Invalid:
    return Invalid(msg, loc=("body", *loc))


def check_form(
    *,
    version: str,
    sha256: str,
    files: list[Part],
    parent: str | None,
    base_model: str = "",
    gguf: Part | None = None,
    gguf_sha256: str | None = None,
) -> None:
    """Refuse a bad form before anything is written (422 naming the field)."""
    if not VERSION.match(version):
        raise _invalid(f"version {version!r}: use letters, digits, . _ + - (max 128)", "version")
    if parent is not None and not VERSION.match(parent):
        raise _invalid(f"parent {parent!r} is not a valid version", "parent")
    if "\x00" in base_model:  # PostgreSQL text cannot hold it
        raise _invalid("base_model holds a NUL character; remove it", "base_model")
    if not SHA256.match(sha256):
        raise _invalid("sha256 must be 64 lowercase hex digits (the folder digest)", "sha256")
    if not files:
        raise _invalid("no files: send one `files` part per file of the PEFT folder", "files")
    names = [p.name for p in files]
    for name in names:
        if not FILE_NAME.match(name):
            raise _invalid(f"file name {name!r}: a flat name (letters, digits, . _ + -)", "files")
        if not name.lower().endswith(ALLOWED_SUFFIXES):
            raise _invalid(
                f"file {name!r} is refused: weights must be safetensors (a .bin/.pt/.pth/.pkl/"
                ".ckpt file is a pickle that runs code when loaded; save the adapter with "
                f"safe_serialization=True); other files may be {', '.join(ALLOWED_SUFFIXES)}",
                "files",
            )
    if len(set(names)) != len(names):
        raise _invalid("the same file name appears twice", "files")
    if gguf is not None:
        if not FILE_NAME.match(gguf.name) or not gguf.name.lower().endswith(".gguf"):
            raise _invalid(f"gguf file name {gguf.name!r}: a flat name ending in .gguf", "gguf")
        if not gguf_sha256 or not SHA256.match(gguf_sha256.lower()):
            raise _invalid(
                "a gguf file needs gguf_sha256 (64 hex digits, the sha256 of the file): "
                "the store checks it before storing the file",
                "gguf_sha256",
            )


def stage(
    storage: AdapterStorage,
    *,
    sha256: str,
    files: list[Part],
    gguf: Part | None = None,
    gguf_sha256: str | None = None,
) -> Staged:
    """Write the files under a staging key and verify them; on any failure nothing is left."""
    key = f"staging-{uuid.uuid4().hex}"
    try:
        digests: dict[str, str] = {}
        size = 0
        for part in files:
            digests[part.name], n = storage.write(key, part.name, part.file)
            size += n
        got = manifest_digest(digests)
        if got != sha256:
            raise ChecksumRefused(
                f"checksum mismatch: the files digest to {got}, the form says {sha256}; "
                "nothing was stored",
                loc=("body", "sha256"),
            )
        staged = Staged(key=key, files=digests, size=size)
        staged.archive = build_archive(storage, key, sorted(digests))
        if gguf is not None:
            if not gguf_sha256:  # check_form refuses this first; never store unverified
                raise _invalid("a gguf file needs gguf_sha256", "gguf_sha256")
            got, n = storage.write(key + GGUF, gguf.name, gguf.file)
            if got != gguf_sha256.lower():
                raise ChecksumRefused(
                    f"gguf checksum mismatch: the file digests to {got}, the form says "
                    f"{gguf_sha256}; nothing was stored",
                    loc=("body", "gguf_sha256"),
                )
            staged.gguf = (gguf.name, got, n)
        return staged
    except BaseException:
        discard(storage, key)
        raise


SIGNATURE = re.compile(r"^[A-Za-z0-9+/]{86}==$")
"""Base64 of the 64 bytes of an Ed25519 signature."""


def check_signature(signature: str | None) -> None:
    """The store cannot verify it (no key) but keeps only what could be a signature."""
    if signature is not None and not SIGNATURE.fullmatch(signature):
        raise _invalid(
            "signature must be the base64 of a 64-byte Ed25519 signature "
            "(crlhf_contract.signing.sign_adapter)",
            "signature",
        )


def discard(storage: AdapterStorage, key: str) -> None:
    storage.delete(key)
    storage.delete(key + GGUF)
    storage.delete(key + ARCHIVE)


class _Chunks:
    """A read()-able view of a storage key's chunks (what ``tarfile`` copies from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buf = chunks, b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        out, self._buf = (self._buf, b"") if n < 0 else (self._buf[:n], self._buf[n:])
        return out


def write_tar(storage: AdapterStorage, key: str, names: list[str], out: IO[bytes]) -> None:
    """Write the deterministic tar of ``key``'s files (the bytes of ``tar_of``) to ``out``,
    one chunk at a time."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = storage.size(key, name), 0, 0o644
            tar.addfile(info, _Chunks(storage.read(key, name)))  # type: ignore[arg-type]


def build_archive(
    storage: AdapterStorage, key: str, names: list[str], dest: str | None = None
) -> tuple[str, int]:
    """Store the download's tar of ``key``'s files under ``(dest or key) + ARCHIVE``
    (through a temporary file, never whole in memory); (sha256, size)."""
    with tempfile.TemporaryFile(prefix="crlhf-adapter-", suffix=".tar") as tmp:
        write_tar(storage, key, names, tmp)
        tmp.seek(0)
        return storage.write((dest or key) + ARCHIVE, ARCHIVE_NAME, tmp)


def register(
    session: Session,
    storage: AdapterStorage,
    *,
    staged: Staged,
    version: str,
    parent: str | None,
    base_model: str,
    sha256: str,
    metrics: dict[str, Any],
    created_by: str,
    signature: str | None = None,
) -> AdapterOut:
    """Insert the registry row and move the staged files to the version's key."""
    if session.scalar(select(Adapter.id).where(Adapter.version == version)) is not None:
        raise Conflict(f"adapter {version} already exists; upload under a new version")
    row = Adapter(
        version=version,
        parent=parent,
        base_model=base_model,
        sha256=sha256,
        size=staged.size,
        storage_key=version,
        files=staged.files,
        metrics=metrics,
        status="candidate",
        created_by=created_by,
        signature=signature,
        archive_sha256=staged.archive[0] if staged.archive else None,
        archive_size=staged.archive[1] if staged.archive else None,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent upload of the same version won
        raise Conflict(f"adapter {version} already exists; upload under a new version") from exc
    if staged.gguf is not None:
        name, digest, size = staged.gguf
        session.add(
            AdapterArtifactRow(adapter_id=row.id, kind="gguf", name=name, sha256=digest, size=size)
        )
        session.flush()
    discard(storage, version)  # leftovers of an upload whose commit failed
    storage.move(staged.key, version)
    if staged.gguf is not None:
        storage.move(staged.key + GGUF, version + GGUF)
    if staged.archive is not None:
        storage.move(staged.key + ARCHIVE, version + ARCHIVE)
    session.refresh(row)
    return to_out(row)


def to_out(row: Adapter) -> AdapterOut:
    artifacts = [AdapterArtifact(kind="peft", sha256=row.sha256, size=row.size)]
    artifacts += [AdapterArtifact(kind="gguf", sha256=a.sha256, size=a.size) for a in row.artifacts]
    return AdapterOut(
        version=row.version,
        parent=row.parent,
        base_model=row.base_model,
        sha256=row.sha256,
        size=row.size,
        status=row.status,  # type: ignore[arg-type]
        metrics=row.metrics,
        artifacts=artifacts,
        created_by=row.created_by,
        created_at=row.created_at,
        published_at=row.published_at,
        signature=row.signature,
    )


def get(session: Session, *, version: str) -> Adapter:
    if not VERSION.match(version):  # cannot exist; and PostgreSQL refuses a NUL in a query
        raise NotFound(f"no adapter {version!r}; GET /v1/adapters lists them")
    row = session.scalar(select(Adapter).where(Adapter.version == version))
    if row is None:
        raise NotFound(f"no adapter {version!r}; GET /v1/adapters lists them")
    return row


def set_status(session: Session, *, version: str, status: str, actor: str) -> AdapterOut:
    """Publish or retire ``version``, recording who did it in the status history."""
    row = get(session, version=version)
    if row.status != status:
        row.status = status
        now = datetime.now(UTC)
        if status == "published":
            row.published_at, row.retired_at = now, None
        else:
            row.retired_at = now
        session.flush()
    record_status_change(session, version=version, status=status, actor=actor)
    return to_out(row)


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


def list_all(session: Session) -> list[AdapterOut]:
    return [to_out(r) for r in session.scalars(select(Adapter).order_by(Adapter.id))]


def latest(session: Session) -> AdapterOut:
    row = session.scalar(
        select(Adapter)
        .where(Adapter.status == "published")
        .order_by(Adapter.published_at.desc(), Adapter.id.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound("no published adapter yet")
    return to_out(row)


def peft_archive(session: Session, storage: AdapterStorage, row: Adapter) -> tuple[str, int]:
    """(sha256, size) of the adapter's stored download tar; an adapter uploaded before the
    archive was kept gets it built now (then recorded in ``row``; commit ``session``)."""
    if row.archive_sha256 is not None and row.archive_size is not None:
        return row.archive_sha256, row.archive_size
    staging = f"staging-{uuid.uuid4().hex}"
    try:
        digest, size = build_archive(storage, row.storage_key, list(row.files), staging)
        storage.delete(row.storage_key + ARCHIVE)
        with contextlib.suppress(OSError):  # a concurrent first download stored it first
            storage.move(staging + ARCHIVE, row.storage_key + ARCHIVE)
    finally:
        storage.delete(staging + ARCHIVE)
    row.archive_sha256, row.archive_size = digest, size
    session.flush()
    return digest, size


def read_archive(storage: AdapterStorage, storage_key: str) -> Iterator[bytes]:
    """The stored download tar of the adapter at ``storage_key``, chunk by chunk."""
    return storage.read(storage_key + ARCHIVE, ARCHIVE_NAME)


def gguf_file(row: Adapter) -> AdapterArtifactRow:
    art = next((a for a in row.artifacts if a.kind == "gguf"), None)
    if art is None:
        raise NotFound(f"adapter {row.version} has no gguf artifact")
    return art
