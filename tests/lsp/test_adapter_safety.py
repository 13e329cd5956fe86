"""Adapters: only what the trainer published, only where it belongs.

- archives: sparse and non-regular members, odd names and sizes over the registry's are
  refused before they are written (``crlhf_contract.digest.safe_extract``);
- versions: a store naming ``../../x`` never makes crlhf-lsp delete or write outside its
  cache (a real HTTP server plays that store, since a real store cannot hold one);
- a cached ``.gguf`` is re-hashed before it is loaded;
- signatures: ``crlhf-train keygen``, the trainer's ``publish()`` signs, the store keeps the
  signature, a real crlhf-lsp with ``adapterPublicKey`` loads only what that key signed;
- settings: a plain-http store on another machine is refused unless opted in.

No model is needed: the ``openai`` backend loads an adapter by name, and the adapter
manager's own tests hand its ``swap`` a function that records what it was given.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from crlhf_contract.client import StoreClient, UnsafeAdapter
from crlhf_contract.digest import (
    FILE_NAME,
    VERSION,
    UnsafeArchive,
    folder_digest,
    safe_extract,
    tar_of,
)
from crlhf_contract.signing import SigningError, generate_keypair, sign_adapter, verify_adapter
from crlhf_lsp.adapters import AdapterManager
from crlhf_lsp.errors import SettingsError
from crlhf_lsp.settings import Settings
from fake_openai import FakeOpenAI, serve_fake_openai
from lsp_harness import command, lsp_session, request, wait_until

# --- archives ------------------------------------------------------------------------------


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _sparse_tar(name: str, real_size: int) -> bytes:
    """An old-GNU sparse member: 512 bytes of data, ``real_size`` once expanded."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 512
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    # One sparse region (its data at the end of the file), then the expanded size.
    header[386:398] = tarfile.itn(real_size - 512, 12, tarfile.GNU_FORMAT)
    header[398:410] = tarfile.itn(512, 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b"        "
    checksum = sum(header[:512])
    header[148:156] = b"%06o\x00 " % checksum
    return bytes(header[:512]) + b"\x01" * 512 + b"\x00" * 1024


def test_a_sparse_member_is_refused_before_it_expands(tmp_path: Path) -> None:
    archive = _sparse_tar("adapter_model.safetensors", 300 << 20)
    assert len(archive) < 10_000
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # what it would expand to
        [member] = tar.getmembers()
        assert member.issparse() and member.size == 300 << 20
    with pytest.raises(UnsafeArchive, match="not a plain file"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "name", ["..\\evil", "a\\b.json", ".hidden", "..", "a/b", "/etc/x", "", "x\n", "x y"]
)
def test_names_outside_the_store_rule_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeArchive):
        safe_extract(_tar(_file(name)), tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def _member(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    return info, None


@pytest.mark.parametrize(
    "kind",
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE],
)
def test_non_regular_members_are_refused(tmp_path: Path, kind: bytes) -> None:
    with pytest.raises(UnsafeArchive, match="not a plain file"):
        safe_extract(_tar(_member("adapter.json", kind)), tmp_path / "out")


def test_sizes_are_capped_at_the_recorded_size_and_names_once(tmp_path: Path) -> None:
    files = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"w" * 1000}
    archive = tar_of(files)
    assert sorted(safe_extract(archive, tmp_path / "ok", max_bytes=1002)) == sorted(files)
    with pytest.raises(UnsafeArchive, match="recorded size"):
        safe_extract(archive, tmp_path / "total", max_bytes=1001)
    with pytest.raises(UnsafeArchive, match="recorded size"):
        safe_extract(archive, tmp_path / "one", max_bytes=5000, max_file_bytes=999)
    with pytest.raises(UnsafeArchive, match="twice"):
        safe_extract(_tar(_file("a.json"), _file("a.json")), tmp_path / "dup")
    many = _tar(*(_file(f"f{i}.json") for i in range(5)))
    with pytest.raises(UnsafeArchive, match="entries"):
        safe_extract(many, tmp_path / "many", max_files=4)


def test_the_contract_names_are_the_store_rules() -> None:
    from crlhf_store import adapters

    assert VERSION.pattern == adapters.VERSION.pattern
    assert FILE_NAME.pattern == adapters.FILE_NAME.pattern


# --- a store that lies ---------------------------------------------------------------------


class LyingStore:
    """Answers ``/v1/adapters/latest`` with ``record`` and downloads with ``archive``."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}
        self.archive = b""
        self.downloads = 0


@pytest.fixture
def lying_store() -> Iterator[tuple[LyingStore, str]]:
    fake = LyingStore()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("/latest"):
                body, kind = json.dumps(fake.record).encode(), "application/json"
                digest = ""
            else:
                fake.downloads += 1
                body, kind = fake.archive, "application/x-tar"
                digest = hashlib.sha256(body).hexdigest()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("X-Checksum-Sha256", digest)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _record(version: str, files: dict[str, bytes], **extra: Any) -> dict[str, Any]:
    digests = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    manifest = "".join(f"{digests[n]}  {n}\n" for n in sorted(digests))
    return {
        "version": version,
        "parent": None,
        "base_model": "m",
        "sha256": hashlib.sha256(manifest.encode()).hexdigest(),
        "size": sum(map(len, files.values())),
        "status": "published",
        "metrics": {},
        "created_at": "2026-01-01T00:00:00Z",
    } | extra


def _manager(cache: Path, url: str, swaps: list[tuple[Path, str]], **kw: Any) -> AdapterManager:
    logs: list[tuple[str, bool]] = []
    manager = AdapterManager(
        cache,
        client=lambda: StoreClient(url, "t"),
        swap=lambda folder, version: swaps.append((folder, version)) or 0.0,
        announce=lambda swapped: None,
        log=lambda message, error: logs.append((message, error)),
        **kw,
    )
    manager.logs = logs  # type: ignore[attr-defined]
    return manager


@pytest.mark.parametrize("version", ["../../x", "..", "v1/../../x", ".x", "a\\..\\b"])
def test_a_version_that_leaves_the_cache_is_refused_and_nothing_outside_is_touched(
    tmp_path: Path, lying_store: tuple[LyingStore, str], version: str
) -> None:
    fake, url = lying_store
    canary = tmp_path / "x"
    canary.mkdir()
    (canary / "keep.txt").write_text("mine")
    files = {"adapter_config.json": b"{}"}
    fake.record, fake.archive = _record(version, files), tar_of(files)
    swaps: list[tuple[Path, str]] = []
    cache = tmp_path / "lsp" / "adapters"
    manager = _manager(cache, url, swaps)
    assert manager.check() is None
    assert (canary / "keep.txt").read_text() == "mine"
    assert swaps == [] and fake.downloads == 0
    assert any("refused" in m for m, _ in manager.logs)  # type: ignore[attr-defined]
    with pytest.raises(UnsafeAdapter):
        StoreClient(url, "t").download_adapter(_adapter(fake.record), tmp_path / "direct")


def test_a_download_larger_than_the_recorded_size_is_refused(
    tmp_path: Path, lying_store: tuple[LyingStore, str]
) -> None:
    fake, url = lying_store
    files = {"adapter_model.safetensors": b"w" * 100}
    fake.record = _record("v1", files)
    fake.archive = tar_of({"adapter_model.safetensors": b"w" * (4 << 20)})  # 4 MiB instead
    with pytest.raises(UnsafeAdapter, match="more than"):
        StoreClient(url, "t").download_adapter(_adapter(fake.record), tmp_path / "d")


def _adapter(record: dict[str, Any]):  # type: ignore[no-untyped-def]
    from crlhf_contract.schemas import AdapterOut

    return AdapterOut.model_validate(record)


# --- the real store: cached gguf, signatures ---------------------------------------------


def _adapter_files(salt: int = 0) -> dict[str, bytes]:
    """A PEFT folder's two files: a config and real (tiny) safetensors weights."""
    import numpy as np
    from safetensors.numpy import save

    weights = save({"lora_A": np.full((2, 2), salt, dtype=np.float32)})
    config = b'{"r": 4, "base_model_name_or_path": "m"}'
    return {"adapter_config.json": config, "adapter_model.safetensors": weights}


ADAPTER = _adapter_files()


def _folder(tmp_path: Path, name: str, salt: int = 0) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file, data in _adapter_files(salt).items():
        (folder / file).write_bytes(data)
    return folder


def _publish(live_store, folder: Path, version: str, **kw: Any):  # type: ignore[no-untyped-def]
    with live_store.client(live_store.trainer_token) as store:
        store.upload_adapter(folder, version=version, base_model="m", **kw)
        return store.publish_adapter(version)


def test_a_tampered_cached_gguf_is_downloaded_again(tmp_path: Path, live_store) -> None:
    gguf = tmp_path / "lora.gguf"
    gguf.write_bytes(b"GGUF" + b"\x03" * 200)
    _publish(live_store, _folder(tmp_path, "v1"), "v1", gguf=gguf)
    cache = tmp_path / "cache"
    swaps: list[tuple[Path, str]] = []
    manager = _manager(cache, live_store.url, swaps)
    manager.client = lambda: live_store.client()
    assert manager.check() is not None
    cached = cache / "v1.gguf"
    assert cached.read_bytes() == gguf.read_bytes()
    cached.write_bytes(b"GGUF" + b"\x66" * 200)  # changed on disk while crlhf-lsp was away
    again = _manager(cache, live_store.url, swaps)
    again.client = lambda: live_store.client()
    assert again.check() is not None
    assert cached.read_bytes() == gguf.read_bytes()
    assert any("downloading it again" in m for m, _ in again.logs)  # type: ignore[attr-defined]


def test_keygen_writes_a_private_key_only_the_user_reads(tmp_path: Path) -> None:
    from crlhf_trainer.cli import main

    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    private = tmp_path / "keys" / "crlhf-signing.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    public = (tmp_path / "keys" / "crlhf-signing.pub").read_text().strip()
    assert len(public) == 44
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 2  # never overwritten
    assert "--signing-key" in _help("publish") and "--signing-key" in _help("run")


def _help(command: str) -> str:
    from crlhf_trainer.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()  # type: ignore[union-attr]


def test_signatures_bind_the_version_and_both_digests(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path)
    key = public.read_text().strip()
    fields = {"version": "v1", "sha256": "a" * 64, "gguf_sha256": None}
    signature = sign_adapter(private, **fields)
    verify_adapter(key, signature, **fields)
    verify_adapter(str(public), signature, **fields)  # the key given as a file
    for changed in ({"version": "v2"}, {"sha256": "b" * 64}, {"gguf_sha256": "c" * 64}):
        with pytest.raises(SigningError, match="does not match"):
            verify_adapter(key, signature, **(fields | changed))
    with pytest.raises(SigningError, match="not signed"):
        verify_adapter(key, None, **fields)
    other, _ = generate_keypair(tmp_path / "other")
    with pytest.raises(SigningError, match="does not match"):
        verify_adapter(key, sign_adapter(other, **fields), **fields)


def test_publish_signs_and_the_store_returns_the_signature(
    tmp_path: Path, live_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crlhf_trainer.gate import GateDecision
    from crlhf_trainer.publish import publish

    private, public = generate_keypair(tmp_path / "keys")
    monkeypatch.setenv("CRLHF_SIGNING_KEY", str(private))
    folder = _folder(tmp_path, "adapter")
    with live_store.client(live_store.trainer_token) as store:
        result = publish(
            store,
            folder,
            version="s1",
            base_model="m",
            parent=None,
            metrics={},
            decision=GateDecision(decision="publish"),
        )
        [out] = [a for a in store.list_adapters() if a.version == "s1"]
    assert result.sha256 == folder_digest(folder)
    verify_adapter(
        public.read_text(), out.signature, version="s1", sha256=out.sha256, gguf_sha256=None
    )


def test_the_store_refuses_a_signature_that_cannot_be_one(tmp_path: Path, live_store) -> None:
    from crlhf_contract.client import StoreRejected

    with live_store.client(live_store.trainer_token) as store, pytest.raises(StoreRejected):
        store._request(
            "POST",
            "/v1/adapters",
            data={
                "version": "bad-sig",
                "base_model": "m",
                "sha256": folder_digest(_folder(tmp_path, "a")),
                "signature": "not base64!",
            },
            files=[("files", (n, d)) for n, d in ADAPTER.items()],
        )


@pytest.fixture
def fake_vllm() -> Iterator[str]:
    """A vLLM that loads the adapters crlhf-lsp hands it (issue 17)."""
    with serve_fake_openai("vllm") as url:
        yield url


async def test_a_real_lsp_loads_only_what_the_key_signed(
    tmp_path: Path, live_store, fake_vllm: str
) -> None:
    private, public = generate_keypair(tmp_path / "keys")
    other, _ = generate_keypair(tmp_path / "other")
    settings = {
        "backend": "openai",
        "openaiUrl": fake_vllm,
        "outboxPath": str(tmp_path / "lsp" / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
        "storeUrl": live_store.url,
        "token": live_store.annotator_token,
        "adapterPublicKey": public.read_text().strip(),
    }
    async with lsp_session(settings) as client:
        _publish(live_store, _folder(tmp_path, "u1"), "unsigned1")
        version, swapped, outcome, message = await _check(client)
        assert (version, swapped, outcome) == (None, False, "refused")
        assert message.startswith("unsigned1 refused: ") and "not signed" in message
        assert any("not signed" in m.message for m in client.log_messages)

        _publish(live_store, _folder(tmp_path, "o1", 1), "other1", signing_key=other)
        assert (await _check(client))[:3] == (None, False, "refused")
        assert any("does not match" in m.message for m in client.log_messages)

        _publish(live_store, _folder(tmp_path, "s1", 2), "signed1", signing_key=private)
        version, swapped, outcome, message = await _check(client)
        assert (version, swapped, outcome) == ("signed1", True, "loaded")
        assert message.startswith("adapter signed1 loaded in ")
        status = await wait_until(lambda: _status_with(client, "signed1"))
        assert status["adapterVersion"] == "signed1"
    loaded = [b["lora_name"] for p, b in FakeOpenAI.seen if p == "/v1/load_lora_adapter"]
    assert loaded == ["signed1"]  # the refused ones never reached the server


async def _status_with(client, version: str):  # type: ignore[no-untyped-def]
    status = await request(client, "crlhf/status")
    return status if status["adapterVersion"] == version else None


# --- settings ------------------------------------------------------------------------------


def test_a_plain_http_store_on_another_machine_is_refused_unless_opted_in(
    tmp_path: Path,
) -> None:
    base = Settings(storeUrl="")
    for url in ("http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:2", "https://x.org"):
        assert base.merged({"storeUrl": url}).storeUrl == url
    for url in ("http://store.example.org", "http://10.0.0.5:8765", "http://127.0.0.1.nip.io"):
        with pytest.raises(SettingsError, match="plain http"):
            base.merged({"storeUrl": url})
        assert base.merged({"storeUrl": url, "allowInsecureStore": True}).storeUrl == url
    with pytest.raises(SettingsError, match="not an http"):
        base.merged({"storeUrl": "ftp://store"})
    _, public = generate_keypair(tmp_path)
    assert base.merged({"adapterPublicKey": str(public)}).adapterPublicKey == str(public)
    with pytest.raises(SettingsError, match="adapterPublicKey"):
        base.merged({"adapterPublicKey": "not-a-key"})


async def test_an_insecure_store_in_the_environment_is_not_used(tmp_path: Path) -> None:
    settings = {
        "backend": "openai",
        "openaiUrl": "http://127.0.0.1:9",
        "outboxPath": str(tmp_path / "outbox.sqlite3"),
        "adapterPollSeconds": 0,
    }
    env = {"CRLHF_STORE_URL": "http://store.example.org", "CRLHF_TOKEN": "secret"}
    async with lsp_session(settings, env=env) as client:
        await wait_until(lambda: any("plain http" in m.message for m in client.messages))
        assert (await request(client, "crlhf/status"))["storeReachable"] is None


async def _check(client) -> tuple[str | None, bool, str, str]:  # type: ignore[no-untyped-def]
    """``crlhf.checkAdapter``'s answer: (version, swapped, outcome, message)."""
    answer = await command(client, "crlhf.checkAdapter")
    return answer["version"], answer["swapped"], answer["outcome"], answer["message"]
