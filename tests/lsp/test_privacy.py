"""Excluded files (crlhf_lsp.privacy): secrets and opted-out workspaces get no completion and
send nothing. Unit tests of the patterns, then a real crlhf-lsp over stdio with a real
store: nothing of a `.env`, a `key.pem`, an opted-out folder or a file excluded by the
setting reaches the store's database or the outbox file, while an ordinary file's rating
does (so the absence is not for want of a working pipeline)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from crlhf_lsp.errors import SettingsError
from crlhf_lsp.feedback import Feedback
from crlhf_lsp.privacy import DEFAULT_EXCLUDE_GLOBS, Exclusions, parse_ignore_file
from crlhf_lsp.settings import Settings
from lsp_harness import (
    code_actions,
    command,
    edit,
    inline,
    lsp_session,
    open_doc,
    request,
    settings_for,
    wait_until,
)
from lsprotocol import types

SOURCE = "import os\n\n\ndef mean(values):\n    "


@pytest.mark.parametrize(
    "name",
    [".env", ".env.local", "key.pem", "server.KEY", "id_rsa", "id_rsa.pub", "cert.p12"]
    + ["secrets.yaml", "secrets.json"],
)
def test_the_default_globs_exclude_secret_files(name: str) -> None:
    assert Exclusions().excluded(f"file:///work/app/{name}") is not None
    assert Exclusions().excluded(f"file:///work/app/config/{name}") is not None


@pytest.mark.parametrize("name", ["app.py", "env.py", "environment.ts", "keys.py", "README.md"])
def test_ordinary_files_are_not_excluded(name: str) -> None:
    assert Exclusions().excluded(f"file:///work/.venv/app/{name}") is None
    assert Exclusions().excluded(f"untitled:{name}") is None


def test_setting_globs_add_to_the_defaults_and_match_names_paths_and_folders() -> None:
    roots = ["/work/app"]
    ex = Exclusions(["*.txt", "config/prod.yaml", "**/private/**", "vendor/"], lambda: roots)
    assert set(DEFAULT_EXCLUDE_GLOBS) <= set(ex.patterns)
    assert ex.excluded("file:///work/app/.env") == "'.env*' (default)"
    assert ex.excluded("file:///work/app/NOTES.TXT") == "'*.txt' (setting excludeGlobs)"
    assert ex.excluded("file:///elsewhere/config/prod.yaml") is not None
    assert ex.excluded("file:///work/app/config/dev.yaml") is None
    assert ex.excluded("file:///work/app/a/private/b/c.py") is not None
    assert ex.excluded("file:///work/app/private/c.py") is not None
    assert ex.excluded("file:///work/app/vendor/lib/x.py") is not None
    assert ex.excluded("file:///work/app/src/vendor.py") is None


def test_character_sets_and_a_broken_one() -> None:
    ex = Exclusions(["*.[ch]", "[z-a].txt"])
    assert ex.excluded("file:///w/x.h") is not None
    assert ex.excluded("file:///w/x.py") is None
    assert ex.excluded("file:///w/[z-a].txt") is not None  # taken literally


def test_crlhfignore_opts_a_folder_out_and_is_read_again_when_it_changes(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    app = (ws / "src" / "app.py").as_uri()
    ex = Exclusions()
    assert ex.excluded(app) is None
    (ws / ".crlhfignore").write_text("# generated code\nsrc/gen/\n")
    assert ex.excluded(app) is None
    assert ex.excluded((ws / "src" / "gen" / "x.py").as_uri()) is not None
    (ws / ".crlhfignore").write_text("# this repository never leaves the machine\n*\n")
    assert ".crlhfignore" in (ex.excluded(app) or "")
    assert parse_ignore_file("\n# c\n  *.sql  \n") == ("*.sql",)


def test_a_symbolic_link_is_judged_by_its_target_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_KEY=x\n")
    (tmp_path / "config").symlink_to(tmp_path / ".env")
    assert Exclusions().excluded((tmp_path / "config").as_uri()) is not None


def test_the_setting_takes_a_list_of_strings() -> None:
    assert Settings().merged({"crlhf": {"excludeGlobs": ["*.sql", " "]}}).excludeGlobs == ("*.sql",)
    assert Settings().merged({"excludeGlobs": "*.sql"}).excludeGlobs == ("*.sql",)
    with pytest.raises(SettingsError, match="list of strings"):
        Settings().merged({"excludeGlobs": [1]})


def test_feedback_withholds_a_completion_made_before_its_file_was_excluded() -> None:
    import uuid

    from crlhf_contract.schemas import CompletionIn
    from crlhf_lsp.completion import CompletionRecord

    queued: list[object] = []

    class Outbox:
        put_completion = put_event = put_rating = queued.append

    excluded: set[str] = set()
    feedback = Feedback(lambda uri: None, lambda: Outbox(), excluded=excluded.__contains__)  # type: ignore[arg-type, return-value]
    row = CompletionIn(id=uuid.uuid4(), prompt="API_KEY=", text="x", model="m")
    record = CompletionRecord("file:///w/notes.txt", 0, "", "", "x", row)
    feedback.remember(record)
    excluded.add(record.uri)
    feedback.event(record.id, "shown")
    feedback.event(record.id, "accepted")
    assert feedback.rate([(row.id, 0, 1)]) == 0
    assert queued == []
    excluded.clear()  # excluded once: withheld for good
    feedback.event(record.id, "accepted")
    assert feedback.rate([(row.id, 0, 1)]) == 0
    assert queued == []


SECRETS = {
    ".env": "API_KEY=sk-live-8f3a2c91e0d4b7a6SECRETENV\nDEBUG=1\n",
    "key.pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFSECRETPEM\n",
    "optout/app.py": "TOKEN = 'ghp_SECRETOPTOUT'\n\n\ndef mean(values):\n    ",
    "notes.txt": "password = 'SECRETNOTES'\n\n\ndef mean(values):\n    ",
}
MARKERS = ["SECRETENV", "SECRETPEM", "SECRETOPTOUT", "SECRETNOTES", "sk-live-8f3a2c91"]


@pytest.mark.slow  # 10-20 s: make test runs it, make check does not
async def test_excluded_files_get_nothing_and_send_nothing(
    tmp_path: Path, tiny_model: Path, live_store
) -> None:
    ws = tmp_path / "ws"
    (ws / "optout").mkdir(parents=True)
    (ws / "optout" / ".crlhfignore").write_text("*\n")  # this folder opted out
    uris = {}
    for name, text in SECRETS.items():
        (ws / name).write_text(text)
        uris[name] = (ws / name).as_uri()
    demo = (ws / "demo.py").as_uri()
    (ws / "demo.py").write_text(SOURCE)
    outbox_dir = tmp_path / "lsp"
    outbox_dir.mkdir()
    settings = settings_for(
        outbox_dir, tiny_model, storeUrl=live_store.url, token=live_store.annotator_token
    )
    async with lsp_session(settings) as client:
        # notes.txt is not excluded yet: it gets a suggestion (held in memory, not queued).
        open_doc(client, uris["notes.txt"], SECRETS["notes.txt"], "plaintext")
        [early] = await inline(client, uris["notes.txt"], 3, 4)
        early_id = early.command.arguments[0]

        for name in (".env", "key.pem", "optout/app.py"):
            text = SECRETS[name]
            open_doc(client, uris[name], text, "dotenv" if name == ".env" else "plaintext")
            end = text.split("\n")
            last = (len(end) - 1, len(end[-1]))
            assert await inline(client, uris[name], *last) == [], name
            assert await inline(client, uris[name], 0, 8) == [], name
            assert await code_actions(client, uris[name], 0, 3) == [], name

        # Now excluded by the setting: what was suggested there before is withheld too.
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crlhf": {"excludeGlobs": ["*.txt"]}})
        )
        await request(client, "crlhf/status")  # the notification is handled by now
        client.protocol.notify("crlhf/didShowCompletion", {"completionId": early_id})
        edit(client, uris["notes.txt"], 2, (3, 4), (3, 4), early.insert_text)
        await command(client, "crlhf.accepted", early_id)
        assert await code_actions(client, uris["notes.txt"], 3, 5) == []
        assert (await command(client, "crlhf.rate", early_id, 0, -1))["rated"] == 0
        assert await inline(client, uris["notes.txt"], 0, 4) == []

        # An ordinary file, opened with the secrets: it works, and its prompt is its own.
        open_doc(client, demo, SOURCE)
        [item] = await inline(client, demo, 4, 4)
        cid = item.command.arguments[0]
        edit(client, demo, 2, (4, 4), (4, 4), item.insert_text)
        await command(client, "crlhf.accepted", cid)
        assert (await command(client, "crlhf.rate", cid, 0, 1))["rated"] == 1
        await wait_until(lambda: asyncio.to_thread(_labels, live_store), timeout=60)
        await wait_until(lambda: _status_when(client, outboxPending=0), timeout=30)

        logs = " ".join(m.message for m in client.log_messages)
        assert "key.pem is excluded by '*.pem' (default)" in logs

    assert _labels(live_store) == [(cid, 0, 1)]
    with live_store.client(live_store.trainer_token) as store:
        completions = store.export_completions().completions
    assert [str(c.id) for c in completions] == [cid]
    exported = "".join(c.model_dump_json() for c in completions)
    assert not [m for m in MARKERS if m in exported]
    # Byte for byte: the store's database (WAL included) and the outbox file.
    for folder in (live_store.data_dir, outbox_dir):
        for file in folder.rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                leaked = [m for m in MARKERS if m.encode() in data]
                assert not leaked, f"{file} holds {leaked}"


async def _status_when(client, **expected):  # type: ignore[no-untyped-def]
    status = await request(client, "crlhf/status")
    return status if all(status[k] == v for k, v in expected.items()) else None


def _labels(live_store) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    with live_store.client(live_store.trainer_token) as store:
        return [(str(x.completion_id), x.line, x.label) for x in store.export_labels().labels]
