"""crlhf_contract stands alone: importing all of it pulls in no server, model or crlhf code."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "crlhf_contract",
    *(f"crlhf_contract.{m}" for m in ("schemas", "client", "digest", "signing", "dataset")),
]
MODULES.append("crlhf_contract.protocol")
FORBIDDEN = [
    "fastapi",
    "sqlalchemy",
    "uvicorn",
    "alembic",
    "torch",
    "transformers",
    "llama_cpp",
    "crlhf_store",
    "crlhf_lsp",
    "crlhf_trainer",
    "crlhf_models",
    "crlhf_cli",
]


def test_importing_the_contract_loads_nothing_heavy_and_nothing_of_ours() -> None:
    code = (
        f"import sys; import {', '.join(MODULES)};"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_protocol_names_are_unique_and_namespaced() -> None:
    from crlhf_contract import protocol

    assert len(set(protocol.METHODS)) == len(protocol.METHODS)
    assert all(m.startswith("crlhf/") for m in protocol.METHODS)
    assert all(c.startswith("crlhf.") for c in protocol.COMMANDS)


def test_payloads_refuse_unknown_fields() -> None:
    from crlhf_contract.protocol import Status
    from pydantic import ValidationError

    assert Status(outboxPending=3).model_dump()["outboxPending"] == 3
    with pytest.raises(ValidationError, match="typo"):
        Status.model_validate({"typo": 1})


def test_import_linter_contracts_hold() -> None:
    """The forbidden arrows of docs/architecture.md (pyproject's [tool.importlinter])."""
    lint = pytest.importorskip("importlinter")
    assert lint is not None
    out = subprocess.run(
        [sys.executable, "-m", "importlinter.cli"], capture_output=True, text=True, check=False
    )
    if "No module named importlinter.cli" in out.stderr:
        out = subprocess.run(["lint-imports"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
