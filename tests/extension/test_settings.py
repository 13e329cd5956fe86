"""What a cloned repository can make the VS Code extension do (issue 14, "Editor settings a
repository can set"), read from ``extension/package.json`` and ``extension/src``.

A workspace's ``.vscode/settings.json`` may set any setting whose scope is not ``machine``
or ``application``. Before, it could set ``crlhf.storeUrl`` or ``crlhf.openaiUrl`` (where the
annotator's token and every prompt go) and ``crlhf.pythonPath`` or ``crlhf.serverArgs``
(what runs on open); the store token was the openai backend's bearer; and Python started
in the workspace folder, so a repository's own ``crlhf_lsp/`` was imported in its place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from crlhf_contract import protocol
from crlhf_lsp.settings import Settings
from paths import ROOT

EXTENSION = ROOT / "extension"
PACKAGE = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
PROPERTIES: dict[str, dict] = PACKAGE["contributes"]["configuration"]["properties"]
COMMANDS = {c["command"] for c in PACKAGE["contributes"]["commands"]}
SOURCES = {
    p.name: p.read_text(encoding="utf-8")
    for p in (EXTENSION / "src").glob("*.ts")
    if p.name != "protocol.ts"  # generated; its names are the server's commands
}

# Settings that choose where the store token, the OpenAI key, prompts or the outbox go, what
# adapters and model files are loaded, or what program starts: never from a workspace.
GUARDED = (
    "crlhf.storeUrl",
    "crlhf.openaiUrl",
    "crlhf.openaiServer",  # with openaiAdapterDir: where verified adapters are copied to
    "crlhf.openaiAdapterDir",
    "crlhf.serverArgs",
    "crlhf.pythonPath",
    "crlhf.outboxPath",
    "crlhf.adapterPublicKey",
    "crlhf.allowInsecureStore",
    "crlhf.backend",  # with model: which file native code parses (a GGUF, a checkpoint)
    "crlhf.model",
)
SECRETS = {"crlhf.storeToken", "crlhf.openaiApiKey"}  # SecretStorage keys, not settings


def test_settings_that_redirect_secrets_or_start_code_are_not_workspace_settable() -> None:
    for key in GUARDED:
        assert key in PROPERTIES, f"{key} is not declared"
        scope = PROPERTIES[key].get("scope")
        assert scope in ("machine", "application"), (
            f"{key} has scope {scope!r}: a cloned repository's .vscode/settings.json can set it"
        )


def test_restricted_mode_behaviour_is_declared() -> None:
    untrusted = PACKAGE.get("capabilities", {}).get("untrustedWorkspaces")
    assert untrusted, "capabilities.untrustedWorkspaces is not declared"
    assert untrusted["supported"] in ("limited", False)
    if untrusted["supported"] == "limited":
        assert untrusted.get("description")
        restricted = set(untrusted.get("restrictedConfigurations", []))
        assert set(GUARDED) <= restricted, set(GUARDED) - restricted
        assert restricted <= set(PROPERTIES), restricted - set(PROPERTIES)


def _setting_keys_read() -> set[str]:
    """Every ``crlhf.X`` setting the extension's code reads, updates or names."""
    found: set[str] = set()
    for text in SOURCES.values():
        # config.get<T>("x") / .get("x", d) / config.update("x", …) on getConfiguration("crlhf")
        found |= {
            f"crlhf.{k}" for k in re.findall(r"\.(?:get|update)(?:<[^>]*>)?\(\"(\w+)\"", text)
        }
        # "crlhf.x" literals: settings (RESTART_KEYS, openSettings) unless commands or secrets
        for name in re.findall(r"\"(crlhf\.\w+)\"", text):
            if name not in COMMANDS and name not in SECRETS and name != "crlhf.status":
                found.add(name)
    body = re.search(r"SERVER_KEYS = \[(.*?)\]", SOURCES["settings.ts"], re.S)
    assert body, "SERVER_KEYS not found in settings.ts"
    server_keys = re.findall(r"\"(\w+)\"", body.group(1))
    assert server_keys
    return found | {f"crlhf.{k}" for k in server_keys}


def test_every_setting_the_extension_reads_is_declared() -> None:
    read = _setting_keys_read()
    assert {"crlhf.pythonPath", "crlhf.serverArgs", "crlhf.enable", "crlhf.storeUrl"} <= read
    assert {"crlhf.adapterPublicKey", "crlhf.allowInsecureStore"} <= read
    undeclared = read - set(PROPERTIES)
    assert not undeclared, f"read by extension/src but not declared in package.json: {undeclared}"
    for key in read:
        assert PROPERTIES[key].get("description") or PROPERTIES[key].get("markdownDescription")


def test_every_setting_passed_to_crlhf_lsp_is_one_it_knows() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    body = re.search(r"SERVER_KEYS = \[(.*?)\]", SOURCES["settings.ts"], re.S)
    assert body
    assert set(re.findall(r"\"(\w+)\"", body.group(1))) <= fields
    # The two secrets reach it under the names it reads; neither is a settings.json key.
    assert {"token", "openaiApiKey"} <= fields
    assert "settings.openaiApiKey = " in SOURCES["settings.ts"]
    assert "settings.token = " in SOURCES["settings.ts"]
    assert not {"crlhf.token", "crlhf.openaiApiKey", "crlhf.storeToken"} & set(PROPERTIES)


def test_the_openai_key_is_set_by_a_command_into_secret_storage() -> None:
    titles = {c["command"]: c["title"] for c in PACKAGE["contributes"]["commands"]}
    key_commands = [c for c, t in titles.items() if "OpenAI" in t and "key" in t.lower()]
    assert key_commands, "no 'Set OpenAI-compatible API key' command"
    for command in key_commands:
        assert f'command("{command}"' in SOURCES["extension.ts"]
    secret = re.search(r"OPENAI_KEY_SECRET = \"([\w.]+)\"", SOURCES["settings.ts"])
    assert secret and secret.group(1) in SECRETS
    assert "secrets.get(OPENAI_KEY_SECRET)" in SOURCES["settings.ts"]
    assert "secrets.store(OPENAI_KEY_SECRET" in SOURCES["token.ts"]


def test_every_contributed_command_is_registered_and_every_menu_item_exists() -> None:
    registered = set(re.findall(r"command\(\"(crlhf\.\w+)\"", SOURCES["extension.ts"]))
    assert registered == COMMANDS, COMMANDS ^ registered
    menu = set(re.findall(r"command: \"(crlhf\.\w+)\"", SOURCES["status.ts"]))
    assert menu and menu <= COMMANDS, menu - COMMANDS
    # A server command would clash with the one vscode-languageclient registers for it.
    assert not COMMANDS & set(protocol.COMMANDS)


def test_the_status_item_shows_the_set_aside_count() -> None:
    assert "outboxSetAside" in protocol.Status.model_fields
    assert "this.item.text = statusText(" in SOURCES["status.ts"]
    text = SOURCES["statusText.ts"]
    # The status bar text itself (not only the tooltip) carries the count.
    line = re.search(r"return `([^`]*to send[^`]*)`", text)
    assert line, "statusText.ts words no item text"
    aside = re.search(r"const (\w+) = [^;]*outboxSetAside[^;]*;", text)
    assert aside and "${" + aside.group(1) + "}" in line.group(1), line.group(1)


def test_python_starts_outside_the_workspace_with_a_safe_path() -> None:
    server = SOURCES["server.ts"]
    options = re.search(r"function processOptions\(.*?\n\}", server, re.S)
    assert options and 'PYTHONSAFEPATH: "1"' in options.group(0) and "cwd:" in options.group(0)
    # Both processes: the interpreter check and the server itself.
    assert re.search(r"execFile\(python, .*?options", server)
    assert re.search(r"ServerOptions = \{[^}]*options: processOptions\(", server)


def test_a_workspace_package_shadows_crlhf_lsp_unless_pythonsafepath(tmp_path: Path) -> None:
    """Why the above: what ``python -c "import crlhf_lsp"`` in a cloned repository runs."""
    shadow = tmp_path / "crlhf_lsp"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("print('REPOSITORY CODE RAN')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    check = [sys.executable, "-c", "import crlhf_lsp"]
    unsafe = subprocess.run(check, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "REPOSITORY CODE RAN" in unsafe.stdout
    safe = subprocess.run(
        check, cwd=tmp_path, env=env | {"PYTHONSAFEPATH": "1"}, capture_output=True, text=True
    )
    assert safe.returncode == 0 and "REPOSITORY CODE RAN" not in safe.stdout
