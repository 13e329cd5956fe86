"""A second real client no one here wrote: Neovim's built-in LSP client, headless.

Needs Debian's ``neovim`` (``make test`` installs it when missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsp_harness import settings_for
from paths import TESTS

SCRIPT = TESTS / "nvim" / "crlhf_client.lua"


@pytest.mark.e2e
def test_neovim_inline_completion_code_actions_and_rate(
    tmp_path: Path, tiny_model: Path, live_store
) -> None:
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.fail("Neovim is not installed: apt-get install -y neovim (make test does it)")
    out = tmp_path / "nvim.json"
    settings = settings_for(
        tmp_path, tiny_model, storeUrl=live_store.url, token=live_store.annotator_token
    )
    env = os.environ | {
        "CRLHF_PYTHON": sys.executable,
        "CRLHF_SETTINGS": json.dumps(settings),
        "CRLHF_NVIM_OUT": str(out),
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "OMP_NUM_THREADS": "1",
    }
    subprocess.run(
        [nvim, "--headless", "--clean", "-c", f"luafile {SCRIPT}"],
        cwd=tmp_path,
        env=env,
        timeout=420,
        check=False,
        capture_output=True,
    )
    results = json.loads(out.read_text())
    assert results["ok"], results.get("error")
    assert results["inline_provider"] is True
    assert results["insert_text"].strip()
    assert results["titles"] == ["👍 crlhf: line is correct", "👎 crlhf: line is wrong"]
    assert results["rated"] == 1
    assert results["status"]["model"] == str(tiny_model)

    assert results["status"]["outboxPending"] == 0
    with live_store.client(live_store.trainer_token) as store:
        labels = store.export_labels().labels
    assert [(str(x.completion_id), x.line, x.label) for x in labels] == [
        (results["completion_id"], 0, 1)
    ]
