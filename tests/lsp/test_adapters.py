"""Adapters end to end: published in a real store, polled, verified, hot-swapped by crlhf-lsp
while completions keep being requested; bad adapters are refused and the old one stays."""

from __future__ import annotations

import asyncio
import tarfile
from pathlib import Path

import pytest
from lsp_harness import command, inline, lsp_session, open_doc, request, settings_for, wait_until
from tiny_model import make_tiny_adapter

URI = "file:///work/swap.py"
SOURCE = "import os\n\n\ndef mean(values):\n    "


def _publish(live_store, folder: Path, version: str, model: Path) -> None:  # type: ignore[no-untyped-def]
    with live_store.client(live_store.trainer_token) as store:
        store.upload_adapter(folder, version=version, base_model=str(model))
        store.publish_adapter(version)


def _misfit(folder: Path) -> Path:
    """The same adapter with one LoRA matrix of the wrong shape for the model."""
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / "adapter_model.safetensors"
    state = load_file(str(path))
    key = next(k for k in state if "lora_A" in k)
    state[key] = torch.zeros(state[key].shape[0], state[key].shape[1] + 3)
    save_file(state, str(path))
    return folder


@pytest.mark.slow  # 10-20 s: make test runs it, make check does not
async def test_adapter_hot_swap_during_completions_and_refusals(
    tmp_path: Path, tiny_model: Path, live_store
) -> None:
    _publish(live_store, make_tiny_adapter(tiny_model, tmp_path / "v1", seed=1), "v1", tiny_model)
    settings = settings_for(
        tmp_path,
        tiny_model,
        storeUrl=live_store.url,
        token=live_store.annotator_token,
        adapterPollSeconds=0.5,
    )
    async with lsp_session(settings) as client:
        open_doc(client, URI, SOURCE)
        answers: list[int] = []
        done = asyncio.Event()

        async def keep_asking() -> None:
            while not done.is_set():
                answers.append(len(await inline(client, URI, 4, 4)))

        asker = asyncio.ensure_future(keep_asking())
        status = await wait_until(lambda: _status_when(client, adapterVersion="v1"), timeout=120)
        count = len(answers)
        await wait_until(lambda: len(answers) >= count + 3, timeout=60)  # after the swap too
        done.set()
        await asyncio.wait_for(asker, 60)  # raises if any request failed
        assert answers and all(n == 1 for n in answers)  # none failed, none came back empty
        assert status["model"] == str(tiny_model)
        assert any("adapter v1 loaded" in m.message for m in client.log_messages)

        # A published adapter that does not fit the model: refused, v1 stays.
        _publish(
            live_store, _misfit(make_tiny_adapter(tiny_model, tmp_path / "v2")), "v2", tiny_model
        )
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["version"], checked["swapped"], checked["outcome"]) == (
            "v1",
            False,
            "refused",
        )
        assert checked["message"].startswith("v2 refused: ") and checked["message"].endswith(
            "using v1"
        )
        assert any("adapter v2 refused" in m.message for m in client.log_messages)

        # One whose files were damaged in the store: the checksum fails, v1 stays.
        _publish(
            live_store, make_tiny_adapter(tiny_model, tmp_path / "v3", seed=3), "v3", tiny_model
        )
        _damage_weights(live_store.data_dir / "adapters", "v3")
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["version"], checked["swapped"], checked["outcome"]) == (
            "v1",
            False,
            "refused",
        )
        # What the user reads: which version, and that its checksum failed.
        assert checked["message"].startswith("v3 refused: ") and "sha256" in checked["message"]
        assert any("adapter v3 refused" in m.message for m in client.log_messages)
        [item] = await inline(client, URI, 4, 4)
        assert item.insert_text.strip()

        # And a good one after them is loaded.
        _publish(
            live_store, make_tiny_adapter(tiny_model, tmp_path / "v4", seed=4), "v4", tiny_model
        )
        checked = await command(client, "crlhf.checkAdapter")
        assert (checked["version"], checked["swapped"], checked["outcome"]) == (
            "v4",
            True,
            "loaded",
        )
        assert checked["message"].startswith("adapter v4 loaded in ")
        assert (await command(client, "crlhf.checkAdapter"))["message"] == "already on v4"
        assert (await request(client, "crlhf/status"))["adapterVersion"] == "v4"


def _damage_weights(root: Path, version: str) -> None:
    """Overwrite the last 8 bytes of ``version``'s weights where the store keeps them: the
    uploaded file and the download's tar built from it at upload."""
    damaged = 0
    for path in root.rglob("*"):
        if version not in str(path) or not path.is_file():
            continue
        if path.name == "adapter_model.safetensors":
            path.write_bytes(path.read_bytes()[:-8] + b"garbage!")
            damaged += 1
        elif path.suffix == ".tar":
            with tarfile.open(path) as tar:
                member = tar.getmember("adapter_model.safetensors")
            with open(path, "r+b") as f:
                f.seek(member.offset_data + member.size - 8)
                f.write(b"garbage!")
            damaged += 1
    assert damaged == 2, f"expected the weights and their tar under {root}, damaged {damaged}"


async def _status_when(client, **expected):  # type: ignore[no-untyped-def]
    status = await request(client, "crlhf/status")
    return status if all(status[k] == v for k, v in expected.items()) else None
