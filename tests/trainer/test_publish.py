"""Adapter checks, the model card and the registry round trip (the gate: test_gate.py)."""

from __future__ import annotations

import pytest
import torch
from crlhf_trainer.errors import AdapterError, StoreGone
from crlhf_trainer.gate import gate
from crlhf_trainer.lora import load_policy, save_adapter
from crlhf_trainer.publish import (
    new_version,
    publish,
    verify_adapter,
    write_model_card,
)
from crlhf_trainer.train import TrainConfig
from train_helpers import tiny

SAME = {"mbpp/pass@1": [1.0, 0.0] * 10}  # 20 paired items, no change: published


@pytest.fixture
def adapter(tmp_path):
    """A LoRA adapter with non-zero weights, and the logits it gives in memory."""
    model_dir = tiny()
    torch.manual_seed(0)
    policy = load_policy(str(model_dir), TrainConfig(lora_r=4))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    policy.eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        logits = policy(input_ids=ids).logits
    folder = save_adapter(policy, tmp_path / "adapter", str(model_dir))
    return model_dir, folder, ids, logits


def test_a_corrupted_adapter_is_refused(adapter, tmp_path):
    _, folder, _, _ = adapter
    assert verify_adapter(folder)["base_model_name_or_path"]
    (folder / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(AdapterError, match="corrupted"):
        verify_adapter(folder)
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="lacks adapter_model.safetensors"):
        verify_adapter(folder)


def test_the_published_adapter_reloads_to_identical_logits(adapter, live_store, tmp_path):
    model_dir, folder, ids, logits = adapter
    base = str(model_dir)
    version = new_version(folder)
    metrics = {"mbpp/pass@1": 0.5}
    same = dict(version=version, base_model=base, parent=None, metrics=metrics)
    write_model_card(folder, **same, decision=gate(SAME, SAME))
    client = live_store.client(live_store.trainer_token)
    result = publish(client, folder, **same, decision=gate(SAME, SAME))
    assert result.status == "published"
    latest = client.latest_adapter()
    assert latest is not None and latest.version == version and latest.base_model == base
    fetched = client.download_adapter(latest, tmp_path / "fetched")
    card = (fetched / "README.md").read_text()
    assert "base_model: " + base in card
    assert "**Gate: publish.**" in card and "n=20" in card
    policy = load_policy(base, TrainConfig(), adapter=fetched, trainable=False)
    policy.eval()
    with torch.no_grad():
        assert torch.equal(policy(input_ids=ids).logits, logits)

    # a regressing child is uploaded as a candidate only; the parent stays the latest
    refused = gate({"mbpp/pass@1": [0.0] * 20}, SAME)
    assert refused.decision == "refused"
    child = publish(
        client,
        folder,
        version=version + "-child",
        base_model=base,
        parent=version,
        metrics={"mbpp/pass@1": 0.1},
        decision=refused,
    )
    assert child.status == "candidate"
    assert client.latest_adapter().version == version
    listed = {a.version: a for a in client.list_adapters()}
    assert listed[version + "-child"].parent == version


def test_a_store_gone_at_upload_publishes_nothing(adapter, live_store):
    model_dir, folder, _, _ = adapter
    client = live_store.client(live_store.trainer_token)
    live_store.stop()
    with pytest.raises(StoreGone, match="not published"):
        publish(
            client,
            folder,
            version="v1",
            base_model=str(model_dir),
            parent=None,
            metrics={},
            decision=gate({}, {}),
        )


def test_the_trainer_loads_adapter_weights_from_safetensors_only(adapter, tmp_path):
    """Issue 14: peft falls back to torch.load (pickle) for adapter_model.bin."""
    from crlhf_trainer.lora import load_policy
    from crlhf_trainer.train import TrainConfig

    model_dir, folder, _, _ = adapter
    (folder / "adapter_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(AdapterError, match="safetensors only"):
        load_policy(str(model_dir), TrainConfig(), adapter=folder, trainable=False)
    (folder / "adapter_model.bin").unlink()
    (folder / "adapter_model.safetensors").rename(tmp_path / "away")
    with pytest.raises(AdapterError, match="no adapter_model.safetensors"):
        load_policy(str(model_dir), TrainConfig(), adapter=folder, trainable=False)
