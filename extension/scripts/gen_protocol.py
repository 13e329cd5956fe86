"""Write ``extension/src/protocol.ts`` from ``crlhf_contract.protocol``.

The language server and the extension share one definition of the custom protocol: every
``crlhf/*`` method and ``crlhf.*`` command name, and the payload models, are Python in
``server/crlhf_contract/protocol.py``; this script turns them into TypeScript string
constants and interfaces. ``tests/extension/test_protocol.py`` fails when the checked-in
file differs from what this prints, so a change to the contract is a change here too:

    .venv/bin/python extension/scripts/gen_protocol.py          # rewrite protocol.ts
    .venv/bin/python extension/scripts/gen_protocol.py --out -  # print it

Only pydantic and crlhf_contract are imported (the repository's ``server/`` folder is put
on the path, so an uninstalled checkout works too).
"""

from __future__ import annotations

import argparse
import inspect
import io
import re
import sys
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "extension" / "src" / "protocol.ts"
sys.path.insert(0, str(ROOT / "server"))

from crlhf_contract import protocol  # noqa: E402
from pydantic import BaseModel  # noqa: E402

HEADER = """\
// Generated from crlhf_contract.protocol (server/crlhf_contract/protocol.py) by
// extension/scripts/gen_protocol.py: do not edit. Regenerate with
//   .venv/bin/python extension/scripts/gen_protocol.py
// (tests/extension/test_protocol.py fails while this file is out of date.)
"""

_SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}


def ts_type(schema: dict[str, Any]) -> str:
    """The TypeScript type of a JSON schema of the subset the payloads use."""
    if "anyOf" in schema:
        return " | ".join(ts_type(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "null":
        return "null"
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        inner = ts_type(schema["items"])
        return f"Array<{inner}>"
    raise ValueError(f"gen_protocol: no TypeScript for the schema {schema}; extend ts_type()")


def plain(doc: str) -> str:
    """reST of a docstring as plain text: ``x`` → `x`, :class:`~a.B` → B, None → null."""
    doc = re.sub(r":\w+:`~?(?:[\w.]+\.)?(\w+)`", r"\1", doc)
    return re.sub(r"\bNone\b", "null", doc.replace("``", "`"))


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The trailing ``# comment`` of each field line in the model's source."""
    source = inspect.getsource(model)
    comments: dict[str, str] = {}
    line_field: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.start[0] not in line_field:
            line_field[tok.start[0]] = tok.string
        elif tok.type == tokenize.COMMENT and tok.start[0] in line_field:
            comments[line_field[tok.start[0]]] = tok.string.lstrip("# ").strip()
    return {name: text for name, text in comments.items() if name in model.model_fields}


def jsdoc(text: str, indent: str = "") -> list[str]:
    lines = plain(text).strip().splitlines()
    if len(lines) == 1:
        return [f"{indent}/** {lines[0].strip()} */"]
    return [
        f"{indent}/**",
        *(f"{indent} * {line.strip()}".rstrip() for line in lines),
        f"{indent} */",
    ]


def interface(model: type[BaseModel]) -> list[str]:
    schema = model.model_json_schema(mode="serialization")
    comments = field_comments(model)
    out = [*jsdoc(model.__doc__ or model.__name__), f"export interface {model.__name__} {{"]
    for name, prop in schema["properties"].items():
        if name in comments:
            out += jsdoc(comments[name], "  ")
        # Every field is sent: the server answers with model_dump(), defaults included.
        out.append(f"  {name}: {ts_type(prop)};")
    return [*out, "}"]


def constants(prefix: str) -> list[str]:
    names = [n for n in protocol.__all__ if n.startswith(prefix)]
    return [f'export const {n} = "{getattr(protocol, n)}";' for n in names]


def render() -> str:
    """The whole of protocol.ts."""
    models = [
        getattr(protocol, n)
        for n in protocol.__all__
        if isinstance(getattr(protocol, n), type) and issubclass(getattr(protocol, n), BaseModel)
    ]
    parts = [
        HEADER,
        "// LSP methods (requests and notifications) of crlhf-lsp.",
        *constants("M_"),
        "",
        "// workspace/executeCommand commands of crlhf-lsp.",
        *constants("CMD_"),
    ]
    for model in models:
        parts += ["", *interface(model)]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="file to write; '-' prints it")
    args = parser.parse_args(argv)
    text = render()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
