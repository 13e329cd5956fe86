"""The extension's protocol.ts is generated from crlhf_contract.protocol and kept current."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from crlhf_contract import protocol
from paths import ROOT

SCRIPT = ROOT / "extension" / "scripts" / "gen_protocol.py"
CHECKED_IN = ROOT / "extension" / "src" / "protocol.ts"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protocol", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_protocol_ts_is_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "protocol.ts"
    assert _generator().main(["--out", str(out)]) == 0
    assert CHECKED_IN.read_text(encoding="utf-8") == out.read_text(encoding="utf-8"), (
        "extension/src/protocol.ts is out of date with crlhf_contract.protocol: run "
        ".venv/bin/python extension/scripts/gen_protocol.py and commit the result"
    )


def test_every_name_and_payload_field_reaches_typescript() -> None:
    text = CHECKED_IN.read_text(encoding="utf-8")
    for name in (*protocol.METHODS, *protocol.COMMANDS):
        assert f'= "{name}";' in text
    for model in (protocol.Status, protocol.ReviewTaskPayload, protocol.AdapterChanged):
        body = re.search(rf"export interface {model.__name__} \{{(.*?)\n\}}", text, re.S)
        assert body, model.__name__
        assert set(re.findall(r"^  (\w+):", body.group(1), re.M)) == set(model.model_fields)


def test_the_extension_uses_no_hand_written_protocol_names() -> None:
    """Every crlhf/* method and server command is spelled only in protocol.ts."""
    names = (*protocol.METHODS, *protocol.COMMANDS)
    for source in (ROOT / "extension" / "src").glob("*.ts"):
        if source.name == "protocol.ts":
            continue
        text = source.read_text(encoding="utf-8")
        spelled = [n for n in names if f'"{n}"' in text]
        assert not spelled, f"{source.name} spells {spelled}: import them from ./protocol"
