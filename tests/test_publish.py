"""The gate, adapter checks, and the registry round trip."""

from __future__ import annotations

import pytest
import torch
from crlhf_trainer.errors import AdapterError, StoreGone, TrainConfigError
from crlhf_trainer.publish import (
    gate,
    new_version,
    publish,
    verify_adapter,
    write_model_card,
)
from crlhf_trainer.train import TrainConfig, load_policy, save_adapter
from train_helpers import tiny


def test_the_gate_refuses_a_regressing_adapter():
    baseline = {"humaneval/pass@1": 0.30, "mbpp/pass@1": 0.40, "heldout/reward": 0.6}
    worse = {"humaneval/pass@1": 0.30, "mbpp/pass@1": 0.35, "heldout/reward": 0.6}
    decision = gate(worse, baseline, margin=0.02)
    assert not decision.passed and decision.regressions == ["mbpp/pass@1 0.400 → 0.350"]
    assert "regressed" in decision.reason()
    assert gate(worse, baseline, margin=0.1).passed
    noise = {"humaneval/pass@1": 0.29, "mbpp/pass@1": 0.41, "heldout/reward": 0.59}
    assert gate(noise, baseline, margin=0.02).passed
    # counts such as "mbpp/problems" are not gated
    assert gate({"mbpp/problems": 1}, {"mbpp/problems": 5}).passed
    with pytest.raises(TrainConfigError):
        gate(worse, baseline, margin=-1)


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
    write_model_card(folder, version=version, base_model=base, parent=None, metrics=metrics)
    client = live_store.client(live_store.trainer_token)
    result = publish(
        client,
        folder,
        version=version,
        base_model=base,
        parent=None,
        metrics=metrics,
        decision=gate(metrics, metrics),
    )
    assert result.status == "published"
    latest = client.latest_adapter()
    assert latest is not None and latest.version == version and latest.base_model == base
    fetched = client.download_adapter(latest, tmp_path / "fetched")
    assert "base_model: " + base in (fetched / "README.md").read_text()
    policy = load_policy(base, TrainConfig(), adapter=fetched, trainable=False)
    policy.eval()
    with torch.no_grad():
        assert torch.equal(policy(input_ids=ids).logits, logits)

    # a regressing child is uploaded as a candidate only; the parent stays the latest
    refused = gate({"mbpp/pass@1": 0.1}, metrics)
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
