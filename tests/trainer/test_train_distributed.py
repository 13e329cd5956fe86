"""Two processes under ``accelerate launch`` (gloo on a CPU): what a CPU can test of DDP.

Each rank trains on its own shard; afterwards every rank must hold the same LoRA weights
(gradients all-reduced), the same reward baseline at every step (per-rank baselines used
to drift apart) and take the same early-stop decision, and only rank 0 writes the adapter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crlhf_store.process import free_port
from paths import TESTS

SCRIPT = r"""
import hashlib, json, os, sys
sys.path.insert(0, os.environ["TESTS_DIR"])
import torch
from crlhf_trainer.examples import Example
from crlhf_trainer.train import TrainConfig, train
from tiny_model import build_tiny_model

model = str(build_tiny_model())
g = torch.Generator().manual_seed(0)
examples = []
for i in range(8):
    ids = torch.randint(5, 200, (10,), generator=g).tolist()
    credit = [0.9 if i % 2 else 0.1] * 6
    examples.append(Example(str(i), ids, ids[:6], 0.9 if i % 2 else 0.1, credit))
out = os.environ["OUT"]
cfg = TrainConfig(method="pg-line", max_steps=3, batch_size=2, grad_accum=2, lr=1e-3,
                  device="cpu", kl_stop=1e9)
report = train(model, examples, cfg, os.path.join(out, "adapter"))
from accelerate import PartialState
state = PartialState()
rank = state.process_index
assert state.num_processes == 2 and state.backend == "gloo", (state.num_processes, state.backend)
state = {"baselines": [h["baseline"] for h in report.history], "steps": report.steps}
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump(state, f)
"""


@pytest.mark.slow
def test_two_gloo_processes_train_one_adapter(tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    env = os.environ | {
        "TESTS_DIR": str(TESTS),
        "OUT": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    # --multi_gpu starts the processes (torchrun); train(device="cpu") makes each of them
    # a CPU rank, and accelerate then picks gloo: accelerate's --cpu starts only one
    cmd = [
        str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu",
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(script),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "rank1.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3
    assert ranks[0]["baselines"] == ranks[1]["baselines"]  # synchronised, not per rank
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
