"""Where adapter files live, behind a small interface an object store could implement.

A stored adapter is a *key* (its version) holding flat files by name. Uploads are
written under a staging key first and moved to the final key only once checked, so a
refused upload leaves nothing behind.

    AdapterStorage            the interface
     ├── LocalFolderStorage   ``<data dir>/adapters/<key>/<name>`` (the default)
     └── MemoryStorage        a dict, for tests
"""

from __future__ import annotations

import abc
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class AdapterStorage(abc.ABC):
    @abc.abstractmethod
    def write(self, key: str, name: str, source: BinaryIO) -> tuple[str, int]:
        """Copy ``source`` to ``key/name``; returns (sha256 hex, size)."""

    @abc.abstractmethod
    def read(self, key: str, name: str) -> Iterator[bytes]:
        """The bytes of ``key/name`` in chunks."""

    @abc.abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Rename a whole key (staging → final)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove a key and its files; no error if absent."""

    @abc.abstractmethod
    def size(self, key: str, name: str) -> int:
        """The size of ``key/name`` in bytes."""

    def read_bytes(self, key: str, name: str) -> bytes:
        return b"".join(self.read(key, name))


class LocalFolderStorage(AdapterStorage):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, name: str | None = None) -> Path:
        for part in (key,) if name is None else (key, name):
            if "/" in part or "\\" in part or part in (".", "..") or not part:
                raise ValueError(f"unsafe storage name {part!r}")
        return self.root / key if name is None else self.root / key / name

    def write(self, key: str, name: str, source: BinaryIO) -> tuple[str, int]:
        path = self._path(key, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        h, size = hashlib.sha256(), 0
        with open(path, "wb") as out:
            while chunk := source.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return h.hexdigest(), size

    def read(self, key: str, name: str) -> Iterator[bytes]:
        with open(self._path(key, name), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def size(self, key: str, name: str) -> int:
        return self._path(key, name).stat().st_size

    def move(self, src: str, dst: str) -> None:
        self._path(src).rename(self._path(dst))

    def delete(self, key: str) -> None:
        shutil.rmtree(self._path(key), ignore_errors=True)


class MemoryStorage(AdapterStorage):
    def __init__(self) -> None:
        self.keys: dict[str, dict[str, bytes]] = {}

    def write(self, key: str, name: str, source: BinaryIO) -> tuple[str, int]:
        data = source.read()
        self.keys.setdefault(key, {})[name] = data
        return hashlib.sha256(data).hexdigest(), len(data)

    def read(self, key: str, name: str) -> Iterator[bytes]:
        yield self.keys[key][name]

    def size(self, key: str, name: str) -> int:
        return len(self.keys[key][name])

    def move(self, src: str, dst: str) -> None:
        self.keys[dst] = self.keys.pop(src)

    def delete(self, key: str) -> None:
        self.keys.pop(key, None)
