"""Adapter storage: the local folder and the in-memory implementation behave alike."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from crlhf_store.storage import AdapterStorage, LocalFolderStorage, MemoryStorage


@pytest.fixture(params=["folder", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AdapterStorage:
    return (
        LocalFolderStorage(tmp_path / "adapters") if request.param == "folder" else MemoryStorage()
    )


def test_write_read_move_delete(storage: AdapterStorage) -> None:
    blob = b"\x00\x01" * 70_000  # more than one chunk
    assert storage.write("staging-1", "adapter_model.safetensors", io.BytesIO(blob)) == (
        hashlib.sha256(blob).hexdigest(),
        len(blob),
    )
    storage.move("staging-1", "v1")
    assert storage.read_bytes("v1", "adapter_model.safetensors") == blob
    storage.delete("v1")
    storage.delete("v1")  # deleting what is gone is fine
    with pytest.raises((FileNotFoundError, KeyError)):
        storage.read_bytes("v1", "adapter_model.safetensors")


def test_the_folder_refuses_names_that_leave_it(tmp_path: Path) -> None:
    storage = LocalFolderStorage(tmp_path / "adapters")
    for key, name in [("..", "x"), ("v1", "../x"), ("a/b", "x"), ("v1", "")]:
        with pytest.raises(ValueError):
            storage.write(key, name, io.BytesIO(b"x"))
    assert not (tmp_path / "x").exists()


def test_the_app_runs_on_the_memory_storage(tmp_path: Path) -> None:
    from crlhf_contract.digest import manifest_digest
    from crlhf_store.app import create_app
    from crlhf_store.settings import StoreSettings
    from crlhf_store.tokens import create_annotator
    from fastapi.testclient import TestClient

    memory = MemoryStorage()
    app = create_app(StoreSettings(data_dir=tmp_path), storage=memory)
    with TestClient(app) as http:
        with app.state.store.db.writing() as s:
            auth = {"Authorization": f"Bearer {create_annotator(s, name='t', scope='trainer')}"}
        files = {"adapter_config.json": b"{}"}
        digest = manifest_digest({n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
        data = {"version": "m1", "base_model": "tiny", "sha256": digest}
        parts = [("files", (n, b)) for n, b in files.items()]
        assert http.post("/v1/adapters", data=data, files=parts, headers=auth).status_code == 200
        assert set(memory.keys) == {"m1", "m1@tar"}  # the files and the download tar
        assert http.get("/v1/adapters/m1/download", headers=auth).status_code == 200


def _download_in_process(
    app: object, path: str, token: str
) -> tuple[int, dict[str, str], bytes, int]:
    """GET ``path`` straight through the ASGI app (no test client buffering the body);
    (status, headers, body, peak bytes traced while the store served it, body excluded)."""
    import asyncio
    import tracemalloc

    status, headers, digest, body = 0, {}, hashlib.sha256(), io.BytesIO()

    done = asyncio.Event()
    requested = False

    async def receive() -> dict[str, object]:
        # the request once; then, like a server, nothing until the response ends (a
        # StreamingResponse listens for the disconnect while it streams)
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    peak = 0

    async def send(message: dict[str, object]) -> None:
        nonlocal status, peak
        if message["type"] == "http.response.start":
            status = int(message["status"])  # type: ignore[call-overload]
            headers.update(
                (k.decode(), v.decode())
                for k, v in message["headers"]  # type: ignore[attr-defined]
            )
        elif message["type"] == "http.response.body":
            chunk = bytes(message.get("body", b""))  # type: ignore[arg-type]
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()  # what the test keeps of the body is not the store's memory
            body.write(chunk)
            tracemalloc.start()
            if not message.get("more_body", False):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }

    async def run() -> None:
        nonlocal peak
        tracemalloc.start()
        try:
            await app(scope, receive, send)  # type: ignore[operator]
            peak = max(peak, tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()

    asyncio.run(run())
    del digest
    return status, headers, body.getvalue(), peak


def test_a_download_streams_the_archive_stored_at_upload(tmp_path: Path) -> None:
    """The tar is built once at upload and stored with its digest; a download streams it:
    the bytes are the stored archive (``tar_of`` of the files), and the memory the store
    takes to serve a 20 MiB adapter stays a few chunks, not the adapter's size (the old
    route built the whole tar in memory per download: peak > 40 MiB here)."""
    from crlhf_contract.digest import manifest_digest, tar_of
    from crlhf_store import adapters
    from crlhf_store.app import create_app
    from crlhf_store.models import Adapter
    from crlhf_store.settings import StoreSettings
    from crlhf_store.tokens import create_annotator
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    storage = LocalFolderStorage(tmp_path / "data" / "adapters")
    app = create_app(StoreSettings(data_dir=tmp_path / "data"), storage=storage)
    weights = bytes(range(256)) * (20 * 4096)  # 20 MiB
    files = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": weights}
    digest = manifest_digest({n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    with TestClient(app) as http:
        with app.state.store.db.writing() as s:
            token = create_annotator(s, name="t", scope="trainer")
        data = {"version": "big1", "base_model": "tiny", "sha256": digest}
        parts = [("files", (n, b)) for n, b in files.items()]
        r = http.post(
            "/v1/adapters", data=data, files=parts, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
        expected = tar_of(files)
        stored = (tmp_path / "data" / "adapters" / "big1@tar" / "peft.tar").read_bytes()
        assert stored == expected
        with app.state.store.db.reading() as s:
            row = s.scalar(select(Adapter).where(Adapter.version == "big1"))
            assert row is not None
            assert (row.archive_sha256, row.archive_size) == (
                hashlib.sha256(expected).hexdigest(),
                len(expected),
            )

        status, headers, body, peak = _download_in_process(app, "/v1/adapters/big1/download", token)
        assert status == 200
        assert body == stored
        assert headers["x-checksum-sha256"] == hashlib.sha256(body).hexdigest()
        assert headers["content-length"] == str(len(body))
        assert peak < 8 << 20, f"serving a 20 MiB adapter traced {peak / 2**20:.1f} MiB"
        del stored, expected

        # an adapter uploaded before the store kept archives: its first download builds it
        with app.state.store.db.writing() as s:
            row = s.scalar(select(Adapter).where(Adapter.version == "big1"))
            assert row is not None
            row.archive_sha256 = row.archive_size = None
        storage.delete("big1" + adapters.ARCHIVE)
        status, headers, again, _ = _download_in_process(app, "/v1/adapters/big1/download", token)
        assert status == 200 and again == body
        assert headers["x-checksum-sha256"] == hashlib.sha256(body).hexdigest()
        with app.state.store.db.reading() as s:
            row = s.scalar(select(Adapter).where(Adapter.version == "big1"))
            assert row is not None and row.archive_sha256 == hashlib.sha256(body).hexdigest()
