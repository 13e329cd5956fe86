"""What the VS Code extension's status item says (issue 17, "the first hour"), run in Node.

``extension/src/statusText.ts`` holds the status item's words as pure functions of the
status crlhf-lsp pushes; esbuild bundles it and Node prints what it says for each state:
"loading model…" rather than "?", "generating…" while a completion is in flight and the
last latency in the tooltip, "no adapter published yet (using base)", "token refused"
rather than an offline store, and an offline icon that exists. Also read from the
extension: the review document's way to rate from the keyboard (Ctrl+. there).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from paths import ROOT

EXTENSION = ROOT / "extension"
PACKAGE = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
E2E_CACHE = Path.home() / ".cache" / "crlhf-e2e"

BASE = {
    "model": "models/tiny",
    "modelLoading": False,
    "adapterVersion": None,
    "adapterPublished": None,
    "outboxPending": 0,
    "outboxSetAside": 0,
    "storeReachable": True,
    "storeProblem": None,
    "tokenRefused": False,
    "enabled": True,
    "generating": False,
    "lastLatencyMs": None,
}
REFUSED = "token refused (401): check the crlhf token setting"
CASES: dict[str, dict[str, Any]] = {
    "none": {},
    "loading": BASE | {"modelLoading": True},
    "generating": BASE | {"generating": True, "lastLatencyMs": 120},
    "done": BASE | {"lastLatencyMs": 87},
    "unpublished": BASE | {"adapterPublished": False},
    "adapter": BASE | {"adapterVersion": "v3", "adapterPublished": True},
    "refused": BASE | {"storeReachable": False, "storeProblem": REFUSED, "tokenRefused": True},
    "offline": BASE | {"storeReachable": False, "storeProblem": "store unreachable: refused"},
    "outcomes": BASE | {"suggested": 20, "accepted": 5, "partlyAccepted": 3, "dismissed": 9},
}


@pytest.fixture(scope="module")
def said(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """{case: {"text", "tooltip"}} as the extension's own code words them."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("Node and npm are needed to run the extension's code")
    if not (EXTENSION / "node_modules" / ".bin" / "esbuild").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXTENSION, check=True)
    tmp = tmp_path_factory.mktemp("status")
    bundle = tmp / "statusText.js"
    esbuild = EXTENSION / "node_modules" / ".bin" / "esbuild"
    src = EXTENSION / "src" / "statusText.ts"
    subprocess.run(
        [
            str(esbuild),
            str(src),
            "--bundle",
            "--platform=node",
            f"--outfile={bundle}",
        ],
        check=True,
        capture_output=True,
    )
    script = (
        f"const s = require({json.dumps(str(bundle))});"
        f"const cases = {json.dumps(CASES)}; const out = {{}};"
        "for (const [k, v] of Object.entries(cases))"
        " out[k] = {text: s.statusText(v, true), tooltip: s.statusTooltip(v, true)};"
        "console.log(JSON.stringify(out));"
    )
    run = subprocess.run(["node", "-e", script], check=True, capture_output=True, text=True)
    return json.loads(run.stdout)


def test_no_question_mark_while_starting_or_loading(said: dict[str, dict[str, str]]) -> None:
    assert said["none"]["text"].startswith("crlhf $(loading~spin) starting…")
    assert said["loading"]["text"].startswith("crlhf $(loading~spin) loading model…")
    assert "model: loading…" in said["loading"]["tooltip"]
    for case in ("none", "loading"):
        assert "?@" not in said[case]["text"], said[case]
    assert said["done"]["text"].startswith("crlhf tiny@base · 0 to send · $(cloud)")


def test_generating_and_the_last_latency(said: dict[str, dict[str, str]]) -> None:
    assert said["generating"]["text"].startswith("crlhf $(sync~spin) generating… · ")
    assert "generating… (last completion: 120 ms)" in said["generating"]["tooltip"]
    assert "generating" not in said["done"]["text"]
    assert "last completion: 87 ms" in said["done"]["tooltip"]
    assert "no completion yet" in said["unpublished"]["tooltip"]


def test_what_became_of_the_suggestions(said: dict[str, dict[str, str]]) -> None:
    assert (
        "suggestions: 20 shown · 5 accepted · 3 in part · 9 dismissed (40% taken)"
        in said["outcomes"]["tooltip"]
    )
    assert "suggestions: none yet" in said["done"]["tooltip"]


def test_the_adapter_line(said: dict[str, dict[str, str]]) -> None:
    assert "adapter: no adapter published yet (using base)" in said["unpublished"]["tooltip"]
    assert "adapter: base" in said["done"]["tooltip"]  # not asked yet: nothing claimed
    assert "crlhf tiny@v3 " in said["adapter"]["text"]


def test_a_refused_token_is_not_an_offline_store(said: dict[str, dict[str, str]]) -> None:
    assert said["refused"]["text"].endswith("· $(key) token refused")
    assert f"store: token refused ({REFUSED})" in said["refused"]["tooltip"]
    assert "unreachable" not in said["refused"]["tooltip"]
    assert said["offline"]["text"].endswith("· $(debug-disconnect) offline")
    assert "store: unreachable (store unreachable: refused)" in said["offline"]["tooltip"]


def _codicons() -> set[str]:
    """The codicon names VS Code knows, from the e2e toolchain's code-server."""
    hosts = sorted(E2E_CACHE.glob("*/code-server/**/vs/workbench/api/node/extensionHostProcess.js"))
    if not hosts:
        pytest.skip("no code-server in ~/.cache/crlhf-e2e (make setup-e2e) to list the codicons")
    return set(re.findall(r'\b[a-z]\("([a-z0-9-]+)",\s*\d+\)', hosts[-1].read_text("utf-8")))


def test_every_icon_the_extension_shows_exists() -> None:
    """An unknown ``$(name)`` shows as nothing: ``$(cloud-offline)`` was one."""
    known = _codicons()
    assert {"cloud", "sync", "key", "debug-disconnect"} <= known
    sources = [p.read_text("utf-8") for p in (EXTENSION / "src").glob("*.ts")]
    used = {m for text in sources for m in re.findall(r"\$\(([a-z0-9-]+)(?:~spin)?\)", text)}
    assert used and used <= known, sorted(used - known)


def test_review_lines_can_be_rated_from_the_keyboard() -> None:
    """The review document is read-only, where VS Code never runs the quick-fix key: there
    Ctrl+. opens crlhf.rateMenu (👍 or 👎 for the selected lines) instead."""
    [binding] = [k for k in PACKAGE["contributes"]["keybindings"] if k["key"] == "ctrl+."]
    assert binding["command"] == "crlhf.rateMenu" and binding["mac"] == "cmd+."
    assert "resourceScheme == crlhf-review" in binding["when"]
    commands = {c["command"] for c in PACKAGE["contributes"]["commands"]}
    assert "crlhf.rateMenu" in commands
    extension = (EXTENSION / "src" / "extension.ts").read_text("utf-8")
    assert 'command("crlhf.rateMenu"' in extension
