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
        assert set(memory.keys) == {"m1"}
        assert http.get("/v1/adapters/m1/download", headers=auth).status_code == 200
