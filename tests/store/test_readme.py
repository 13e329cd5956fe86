"""The README's store commands work as written, in order, on a fresh machine, and every
``crlhf-store`` command finds the database ``serve`` uses: by default, from
``CRLHF_DATA_DIR``, or from the same ``--data-dir``.

The commands are read out of README.md's "The store" section, so the test follows the
README. What a reader does between them is done here too: ``serve`` runs in the background
(on a free port), the tokens printed are kept in ``NAME.token`` (the README's
``revoke-token --stdin < alice.token`` reads one), a honeypot file is written in the format
the README gives, and before the revoke the annotator posts a completion and rates it with
the printed token: the rating must be in the export, through the trainer's token and
through ``crlhf-store export-labels``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from crlhf_contract.client import StoreClient
from crlhf_contract.schemas import CompletionIn, RatingIn
from crlhf_store.process import free_port, wait_ready
from paths import ROOT

BIN = Path(sys.executable).parent


def readme_store_commands() -> list[str]:
    """The ``$ ...`` lines of the first console block in the README's store section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## The store \(crlhf-store\)\n(.*?)^## ", text, re.S | re.M)
    assert section, "README.md has no '## The store (crlhf-store)' section"
    block = re.search(r"```console\n(.*?)```", section.group(1), re.S)
    assert block, "the README's store section has no console block"
    return [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]


def test_the_readme_shows_the_store_commands_a_team_needs() -> None:
    words = [shlex.split(c, comments=True)[:2] for c in readme_store_commands()]
    assert ["crlhf-store", "serve"] in words
    assert words.index(["crlhf-store", "serve"]) < words.index(["crlhf-store", "create-annotator"])
    for command in readme_store_commands():
        argv = shlex.split(command, comments=True)
        assert argv[0] in ("pip", "crlhf-store"), command


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("default", marks=pytest.mark.slow),  # 7-15 s each: a fresh install's
        pytest.param("environment", marks=pytest.mark.slow),  # commands, one process each
        pytest.param("flag", marks=pytest.mark.slow),
    ],
)
def test_the_readme_store_commands_in_order_on_a_fresh_machine(tmp_path: Path, where: str) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    data_dir = tmp_path / "store data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRLHF_", "XDG_"))}
    env |= {"HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    env["PYTHONUNBUFFERED"] = "1"
    extra = ""
    if where == "environment":
        env["CRLHF_DATA_DIR"] = str(data_dir)
    elif where == "flag":
        extra = f" --data-dir {shlex.quote(str(data_dir))}"
    expected_db = (
        home / ".local/share/crlhf-store/store.db" if where == "default" else data_dir / "store.db"
    )
    (work / "honeypots.jsonl").write_text(
        json.dumps(
            {"prompt": "# add\n", "text": "s = a + b\nreturn s", "language": "python"}
            | {"truth": [1, -1]}
        )
        + "\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tokens: dict[str, tuple[str, str]] = {}  # name -> (scope, token)
    server: subprocess.Popen[bytes] | None = None
    rated: str | None = None

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"$ {command}\n{done.stdout}\n{done.stderr}"
        return done

    try:
        for command in readme_store_commands():
            argv = shlex.split(command, comments=True)
            if argv[0] == "pip":
                continue  # installed already: this is the environment the tests run in
            if argv[1] == "revoke-token" and rated is None:
                rated = rate_and_find_it_exported(url, tokens, shell, extra)
            command = command.replace(f"crlhf-store {argv[1]}", f"crlhf-store {argv[1]}{extra}", 1)
            if argv[1] == "serve":
                command = re.sub(r"--port \d+", f"--port {port}", command)
                assert str(port) in command, "the README's serve line names no --port"
                log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
                server = subprocess.Popen(
                    ["bash", "-c", f"exec {command}"], cwd=work, env=env, stdout=log, stderr=log
                )
                log.close()
                wait_ready(server, url, timeout=60, poll=0.1)
                continue
            done = shell(command)
            if argv[1] == "create-annotator":
                scope = argv[argv.index("--scope") + 1] if "--scope" in argv else "annotator"
                token = done.stdout.strip().splitlines()[-1]
                tokens[argv[2]] = (scope, token)
                (work / f"{argv[2]}.token").write_text(token + "\n")  # the user keeps it
                assert f"database sqlite:///{expected_db}" in done.stderr
                assert "warning" not in done.stderr  # serve made it: the same database
            if argv[1] == "revoke-token":
                revoked = argv[-1].removesuffix(".token") if "--stdin" in argv else argv[-1]
                me = httpx.get(f"{url}/v1/me", headers=_bearer(tokens[revoked][1]))
                assert me.status_code == 401, me.text
        if rated is None:
            rated = rate_and_find_it_exported(url, tokens, shell, extra)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    assert expected_db.exists()
    assert rated


def test_an_admin_command_names_its_database_and_warns_when_it_had_to_create_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the README's reader hit: a store started with --data-dir, and create-annotator
    without it, made a token in another database, silently."""
    from crlhf_store.cli import main

    assert main(["migrate", "--data-dir", str(tmp_path / "served")]) == 0
    capsys.readouterr()
    assert main(["create-annotator", "alice", "--data-dir", str(tmp_path / "served")]) == 0
    err = capsys.readouterr().err
    assert f"database sqlite:///{tmp_path / 'served' / 'store.db'}" in err
    assert "warning" not in err
    assert main(["create-annotator", "alice", "--data-dir", str(tmp_path / "other")]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].startswith("crlhf_")  # the token is still last
    assert f"database sqlite:///{tmp_path / 'other' / 'store.db'}" in err
    assert "warning: there was no database there" in err and "--data-dir" in err


def rate_and_find_it_exported(url: str, tokens, shell, extra: str) -> str:  # type: ignore[no-untyped-def]
    """An annotator posts a completion and rates its line 0; the trainer's token and
    ``crlhf-store export-labels`` both find the rating. Returns the completion id."""
    annotator = next(t for scope, t in tokens.values() if scope == "annotator")
    reader = next(t for scope, t in tokens.values() if scope in ("trainer", "admin"))
    completion = CompletionIn(
        id=uuid.uuid4(), prompt="def add(a, b):\n", text="    return a + b", model="m"
    )
    with StoreClient(url, annotator) as store:
        store.post_completions([completion])
        rating = RatingIn(event_id=uuid.uuid4(), completion_id=completion.id, line=0, label=1)
        store.post_ratings([rating])
    with StoreClient(url, reader) as store:
        labels = store.export_labels().labels
    assert [(x.completion_id, x.line, x.label) for x in labels] == [(completion.id, 0, 1)]
    rows = [json.loads(r) for r in shell(f"crlhf-store export-labels{extra}").stdout.splitlines()]
    assert [(r["completion_id"], r["line"], r["label"]) for r in rows] == [
        (str(completion.id), 0, 1)
    ]
    return str(completion.id)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
