"""`crlhf-store` admin commands on SQLite and PostgreSQL, and the package's light import."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from crlhf_contract.schemas import CompletionIn, RatingIn
from crlhf_store.cli import main
from crlhf_store.db import Database
from crlhf_store.ingest import store_completions, store_ratings
from crlhf_store.settings import StoreSettings
from crlhf_store.tokens import authenticate, create_annotator
from sqlalchemy import text


def run(
    capsys: pytest.CaptureFixture[str], db_url: str, *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    real_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        code = main([args[0], "--database-url", db_url, *args[1:]])
    finally:
        sys.stdin = real_stdin
    out, err = capsys.readouterr()
    return code, out, err


def test_create_annotator_prints_the_token_last_and_revoke_kills_it(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    assert run(capsys, db_url, "migrate")[0] == 0
    code, out, _ = run(capsys, db_url, "create-annotator", "dana", "--scope", "trainer")
    token = out.strip().splitlines()[-1]
    assert code == 0 and token.startswith("crlhf_")
    second = run(capsys, db_url, "create-annotator", "dana")[1].strip().splitlines()[-1]
    db = Database(db_url)
    with db.reading() as s:
        assert authenticate(s, token=token).scopes == ("annotator", "trainer")  # type: ignore[union-attr]
    # a token on the command line is refused, and stays live
    code, _, err = run(capsys, db_url, "revoke-token", token)
    assert code == 2 and "--stdin" in err and token not in err
    with db.reading() as s:
        assert authenticate(s, token=token) is not None
    assert run(capsys, db_url, "revoke-token", "--stdin", stdin=f"{token}\n")[0] == 0
    assert run(capsys, db_url, "revoke-token", "--stdin", stdin=token)[0] == 1  # none left
    assert run(capsys, db_url, "revoke-token", "--stdin", stdin="\n")[0] == 2
    with db.reading() as s:
        assert authenticate(s, token=token) is None
        assert authenticate(s, token=second) is not None
    assert run(capsys, db_url, "revoke-token", "--annotator", "dana")[1].startswith("revoked 1")
    assert run(capsys, db_url, "revoke-token", "--annotator", "nobody")[0] == 1
    assert run(capsys, db_url, "revoke-token")[0] == 2
    with db.reading() as s:
        assert authenticate(s, token=second) is None
    db.dispose()


def test_import_honeypots_then_export_labels_with_truth(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    good = tmp_path / "honeypots.jsonl"
    good.write_text(
        json.dumps({"prompt": "# sum\n", "text": "s = a + b\nreturn s - 1\n", "truth": [1, -1]})
        + "\n\n"
        + json.dumps({"text": "x = 1", "language": "python", "truth": [1]})
        + "\n"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + json.dumps({"text": "a\nb", "truth": [1]}) + "\n")
    code, _, err = run(capsys, db_url, "import-honeypots", str(bad))
    assert code == 1 and "line 4" in err and "nothing imported" in err
    assert run(capsys, db_url, "import-honeypots", str(good))[1].startswith("imported 2")
    assert "0 honeypot(s), 2 already" in run(capsys, db_url, "import-honeypots", str(good))[1]

    db = Database(db_url)
    with db.writing() as s:
        create_annotator(s, name="erin")
        hp = s.execute(text("SELECT completion_id FROM honeypots")).scalars()
        honeypot = uuid.UUID(str(sorted(map(str, hp))[0]))
        own = CompletionIn(id=uuid.uuid4(), prompt="", text="y = 2\n", model="m")
        store_completions(s, annotator_id=1, completions=[own])
        store_ratings(
            s,
            annotator_id=1,
            ratings=[
                RatingIn(event_id=uuid.uuid4(), completion_id=cid, line=0, label=1)
                for cid in (own.id, honeypot)
            ],
        )
    db.dispose()
    out_file = tmp_path / "labels.jsonl"
    code, _, err = run(capsys, db_url, "export-labels", "--out", str(out_file))
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert code == 0 and "exported 2" in err
    assert {r["annotator"] for r in rows} == {"erin"}
    assert sorted((r["truth"] is None) for r in rows) == [False, True]
    code, out, err = run(capsys, db_url, "export-labels", "--after", "1")
    assert [json.loads(x)["rating_id"] for x in out.splitlines()] == [rows[1]["rating_id"]]


def test_defaults_bind_loopback_and_use_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = StoreSettings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.host == "127.0.0.1" and settings.port == 8765
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path.resolve() / 'store.db'}"


def test_the_store_cli_help_lists_every_command() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "crlhf_store", "--help"], check=True, capture_output=True, text=True
    ).stdout
    for command in (
        "serve",
        "migrate",
        "create-annotator",
        "revoke-token",
        "import-honeypots",
        "export-labels",
    ):
        assert command in help_text
