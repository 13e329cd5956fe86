"""Checksums of adapters, shared by the store, the trainer and the language server.

An adapter is a folder of files (``adapter_config.json``, ``adapter_model.safetensors``,
``README.md`` …). Its digest does not depend on how the folder was archived:

    folder_digest = sha256( "".join(f"{sha256(file)}  {name}\\n" for name in sorted(names)) )

i.e. the sha256 of the ``sha256sum``-style manifest of its files sorted by name, so
``sha256sum * | sort -k2 | sha256sum`` in the folder gives the same value.

The download is a tar archive built deterministically from the stored files; its own
sha256 travels in the ``X-Checksum-Sha256`` header, and the folder digest is checked again
after extraction against the registry's ``sha256``.

Names: a version matches :data:`VERSION` and a file name :data:`FILE_NAME` (the store
refuses others at upload; clients check them again before a name becomes a path, as a
store or a network path in between may lie).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

CHUNK = 1 << 20
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
"""An adapter version: letters, digits, ``. _ + -``, not starting with a dot (no ``..``,
no slash: it names a folder of the clients' caches)."""
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")
"""A file of an adapter folder: flat, no slash or backslash, not starting with a dot."""
MAX_BYTES = 2 << 30
"""Largest adapter (all files together) when the registry's size is not known: the
store's upload limit."""
MAX_FILES = 64
"""Most files in an adapter archive (a PEFT folder has a handful)."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_digest(file_digests: Mapping[str, str]) -> str:
    """Digest of a manifest ``{file name: sha256 hex}``; see the module docstring."""
    manifest = "".join(f"{file_digests[name]}  {name}\n" for name in sorted(file_digests))
    return hashlib.sha256(manifest.encode()).hexdigest()


def folder_digest(folder: Path, names: Iterable[str] | None = None) -> str:
    """Digest of the regular files directly inside ``folder`` (or of ``names`` in it)."""
    folder = Path(folder)
    if names is None:
        names = [p.name for p in folder.iterdir() if p.is_file()]
    return manifest_digest({name: file_sha256(folder / name) for name in names})


def deterministic_tar(folder: Path, names: Iterable[str]) -> bytes:
    """A tar of ``names`` in ``folder`` with fixed order, mtimes and owners."""
    return tar_of({name: (Path(folder) / name).read_bytes() for name in names})


def tar_of(contents: Mapping[str, bytes]) -> bytes:
    """The deterministic tar of ``{file name: bytes}`` (same bytes as :func:`deterministic_tar`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(contents):
            data = contents[name]
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class UnsafeArchive(ValueError):
    """An adapter archive with something other than flat regular files within the limits."""


def safe_extract(
    archive: bytes,
    dest: Path,
    *,
    max_bytes: int | None = None,
    max_file_bytes: int | None = None,
    max_files: int = MAX_FILES,
) -> list[str]:
    """Extract a flat adapter tar into ``dest``; the names extracted.

    Refused with :class:`UnsafeArchive` before anything is written for them: links,
    folders, devices, sparse members (a few KB that expand to any size), names that are not
    :data:`FILE_NAME` (slashes, backslashes, dot files), the same name twice, more than
    ``max_files`` members, and sizes over ``max_bytes`` in all or ``max_file_bytes`` for one
    file (pass the registry's recorded size: an honest archive holds exactly that much;
    default :data:`MAX_BYTES`). Sizes are counted as the bytes are written, not taken from
    the headers."""
    dest = Path(dest)
    total_cap = MAX_BYTES if max_bytes is None else max_bytes
    file_cap = total_cap if max_file_bytes is None else min(max_file_bytes, total_cap)
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    written = 0
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        members = tar.getmembers()
        if len(members) > max_files:
            raise UnsafeArchive(f"adapter archive holds {len(members)} entries (most {max_files})")
        for member in members:
            _check_member(member, names)
            if member.size > file_cap or written + member.size > total_cap:
                raise UnsafeArchive(
                    f"adapter archive entry {member.name!r} ({member.size} bytes) is over the "
                    f"recorded size of the adapter ({total_cap} bytes)"
                )
            src = tar.extractfile(member)
            assert src is not None  # a regular file, checked above
            with open(dest / member.name, "xb") as out:
                while chunk := src.read(min(CHUNK, file_cap + 1)):
                    written += len(chunk)
                    if written > total_cap:
                        raise UnsafeArchive(
                            f"adapter archive entry {member.name!r} expands past the recorded "
                            f"size of the adapter ({total_cap} bytes)"
                        )
                    out.write(chunk)
            names.append(member.name)
    return names


def _check_member(member: tarfile.TarInfo, seen: list[str]) -> None:
    # tarfile's isfile() also admits sparse and contiguous members: only plain files pass.
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
        raise UnsafeArchive(
            f"adapter archive entry {member.name!r} is not a plain file "
            f"(tar type {member.type!r}{', sparse' if member.issparse() else ''})"
        )
    if not FILE_NAME.fullmatch(member.name):
        raise UnsafeArchive(
            f"adapter archive entry {member.name!r}: not a flat file name "
            "(letters, digits, . _ + -, no slash or backslash, not a dot file)"
        )
    if member.name in seen:
        raise UnsafeArchive(f"adapter archive holds {member.name!r} twice")
