"""Checksums of adapters, shared by the store, the trainer and the language server.

An adapter is a folder of files (``adapter_config.json``, ``adapter_model.safetensors``,
``README.md`` …). Its digest does not depend on how the folder was archived:

    folder_digest = sha256( "".join(f"{sha256(file)}  {name}\\n" for name in sorted(names)) )

i.e. the sha256 of the ``sha256sum``-style manifest of its files sorted by name, so
``sha256sum * | sort -k2 | sha256sum`` in the folder gives the same value.

The download is a tar archive built deterministically from the stored files; its own
sha256 travels in the ``X-Checksum-Sha256`` header, and the folder digest is checked again
after extraction against the registry's ``sha256``.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

CHUNK = 1 << 20


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


def safe_extract(archive: bytes, dest: Path) -> list[str]:
    """Extract a flat adapter tar into ``dest``, refusing links, folders and odd names."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or member.name in ("", ".", ".."):
                raise ValueError(f"adapter archive holds an unexpected entry {member.name!r}")
            src = tar.extractfile(member)
            assert src is not None
            (dest / member.name).write_bytes(src.read())
            names.append(member.name)
    return names
