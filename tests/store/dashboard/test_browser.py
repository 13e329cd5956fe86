"""The dashboard in a real browser: Debian's chromium driven by playwright-core.

A real store filled by the crowd simulator (``dashboard/crowd.py``); ``dashboard/drive.mjs``
logs in, opens every page, checks the charts drew, reads the retention page's share of
characters retained per adapter version, sorts the annotators, publishes adapter v2
through its confirmation page, checks the XSS probe annotator shows as text, mints the
most disputed line into a honeypot from the agreement page and logs an annotator into
their own page.
Screenshots land in ``artifacts/dashboard/``. ``dashboard/setup.sh`` installs chromium if
it is missing and playwright-core once, cached outside the repo (shared with the VS Code
end-to-end test's cache when that has it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import start_live_store
from dashboard.crowd import XSS, fill
from paths import ROOT, TESTS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HERE = TESTS / "dashboard"
ARTIFACTS = ROOT / "artifacts" / "dashboard"


@pytest.fixture(scope="module")
def playwright() -> str:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the browser test drives chromium from Node")
    out = subprocess.run(
        ["bash", str(HERE / "setup.sh")], check=True, capture_output=True, text=True
    ).stdout
    return out.strip().splitlines()[-1].split("=", 1)[1]


def test_dashboard_in_chromium(playwright: str, tmp_path: Path) -> None:
    store = start_live_store(tmp_path / "store")
    try:
        filled = fill(store)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        home = tmp_path / "home"
        home.mkdir()
        env = os.environ | {
            "URL": store.url,
            "TOKEN": store.admin_token,
            "ARTIFACTS": str(ARTIFACTS),
            "PLAYWRIGHT": playwright,
            "XSS": XSS,
            "VERSION": "v2",
            "ANNOTATOR_TOKEN": filled.tokens["ada"],
            # chromium writes crash reports and caches under HOME / XDG dirs
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
        }
        run = subprocess.run(
            ["node", str(HERE / "drive.mjs")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        steps = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        failed = [s for s in steps if not s["ok"]]
        assert run.returncode == 0 and not failed and len(steps) == 16, (
            f"{failed or steps}\n{run.stderr[-3000:]}"
        )
        with store.client(store.admin_token) as admin:
            v2 = next(a for a in admin.list_adapters() if a.version == "v2")
        assert v2.status == "published"
        pages = ("login", "overview", "annotators", "rewards", "adapters", "honeypots", "retention")
        for name in (*pages, "agreement", "agreement-minted", "completion", "me"):
            assert (ARTIFACTS / f"dashboard-{name}.png").stat().st_size > 10_000
    finally:
        store.stop()
