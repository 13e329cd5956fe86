"""`crlhf demo` (placeholder until the end-to-end demo lands): start the store on SQLite.

Creates a working folder, an annotator and a trainer token, prints how to use them, and
runs the store in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crlhf demo", description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("crlhf-work"))
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)

    from crlhf_store.cli import main as store

    data_dir = args.work_dir.resolve() / "store"
    common = ["--data-dir", str(data_dir)]
    url = f"http://127.0.0.1:{args.port}"
    tokens = {}
    for name, scope in [("demo-annotator", "annotator"), ("demo-trainer", "trainer")]:
        tokens[scope] = _create(store, name, scope, common)
    print(
        f"""
crlhf store on SQLite in {data_dir}
  API docs:        {url}/docs
  annotator token: {tokens["annotator"]}
  trainer token:   {tokens["trainer"]}

Try it:
  curl -H "Authorization: Bearer {tokens["annotator"]}" {url}/v1/me
  curl -H "Authorization: Bearer {tokens["trainer"]}" {url}/v1/labels/export

Ctrl-C stops the store; the data stays in {data_dir}.
""",
        flush=True,
    )
    return store(["serve", "--port", str(args.port), *common])


def _create(store, name: str, scope: str, common: list[str]) -> str:  # type: ignore[no-untyped-def]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        store(["create-annotator", name, "--scope", scope, *common])
    return out.getvalue().strip().splitlines()[-1]
