"""``crlhf-store``: run the store and administer it.

    crlhf-store serve [--host 127.0.0.1] [--port 8765] [--database-url URL] [--data-dir DIR]
                      [--workers N]
    crlhf-store migrate
    crlhf-store create-annotator NAME [--scope annotator|trainer|admin]
    crlhf-store revoke-token (--stdin | --annotator NAME)   (the token on stdin)
    crlhf-store import-honeypots FILE.jsonl
    crlhf-store export-labels [--out FILE] [--after CURSOR]
    crlhf-store export-dataset [--format hf] [--run ID] [--include-honeypots]
                               [--include-authors] [--force] OUT/

Every command takes ``--data-dir DIR`` and ``--database-url URL`` as ``serve`` does, and
reads ``CRLHF_DATA_DIR`` / ``CRLHF_DATABASE_URL`` when they are not given; without either,
all use the same default data dir (``$XDG_DATA_HOME/crlhf-store``, else
``~/.local/share/crlhf-store``). Give the admin commands what the store was started with:
they work on the database directly (run them on the store's machine), migrate it first,
and name the database they used on stderr, with a warning when they had to create it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from crlhf_store.settings import StoreSettings, default_data_dir


def _settings(args: argparse.Namespace) -> StoreSettings:
    overrides = {
        k: v
        for k, v in {
            "database_url": args.database_url,
            "data_dir": args.data_dir,
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "workers": getattr(args, "workers", None),
        }.items()
        if v is not None
    }
    return StoreSettings(**overrides)


def _database(settings: StoreSettings, command: str | None = None):  # type: ignore[no-untyped-def]
    """The migrated database; an admin ``command`` says on stderr which one it is, and warns
    when it did not exist: a token made there is one the running store never sees."""
    from crlhf_store.db import Database

    url = settings.resolved_database_url()
    fresh = _missing_sqlite_file(url)
    db = Database(url, pool_size=2, max_overflow=2)
    db.migrate()
    if command is not None:
        print(f"crlhf-store {command}: database {_redact(url)}", file=sys.stderr)
        if fresh:
            print(
                f"crlhf-store {command}: warning: there was no database there, so this "
                "created an empty one; a store started with another --data-dir, "
                "--database-url, CRLHF_DATA_DIR or CRLHF_DATABASE_URL does not see what "
                "this command writes: give it the same one",
                file=sys.stderr,
            )
    return db


def _missing_sqlite_file(url: str) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database).exists()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from crlhf_store.app import serving_app

    settings = _settings(args)
    print(
        f"crlhf-store on http://{settings.host}:{settings.port} "
        f"(database {_redact(settings.resolved_database_url())}, docs at /docs"
        f"{f', {settings.workers} workers' if settings.workers > 1 else ''})",
        file=sys.stderr,
        flush=True,
    )
    run = {"log_level": args.log_level, "access_log": args.access_log}
    if settings.workers == 1:
        uvicorn.run(serving_app(settings), host=settings.host, port=settings.port, **run)
        return 0
    # Several processes: uvicorn starts each from an import string, so the settings travel
    # in the environment; the schema is migrated once here, before any worker serves.
    _database(settings).dispose()
    os.environ.update(_environment(settings))
    uvicorn.run(
        "crlhf_store.app:create_worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **run,
    )
    return 0


def _environment(settings: StoreSettings) -> dict[str, str]:
    """``CRLHF_*`` variables that make a worker's :class:`StoreSettings` equal ``settings``."""
    values = settings.model_dump(exclude_none=True) | {
        "database_url": settings.resolved_database_url()
    }
    return {f"CRLHF_{name.upper()}": str(value) for name, value in values.items()}


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _database(settings).dispose()
    print(f"database at the newest schema: {_redact(settings.resolved_database_url())}")
    return 0


def cmd_create_annotator(args: argparse.Namespace) -> int:
    from crlhf_store.tokens import create_annotator

    db = _database(_settings(args), "create-annotator")
    with db.writing() as session:
        token = create_annotator(session, name=args.name, scope=args.scope)
    db.dispose()
    print(f"annotator {args.name!r} has a new {args.scope} token (shown once, keep it):")
    print(token)
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    from crlhf_store.errors import NotFound
    from crlhf_store.tokens import revoke_token

    if args.token is not None:
        # argv is readable by every user (ps, /proc/PID/cmdline) and lands in shell history
        print(
            "crlhf-store revoke-token: a token on the command line can be read by every user "
            "of this machine; pipe it in instead: crlhf-store revoke-token --stdin < FILE",
            file=sys.stderr,
        )
        return 2
    if args.stdin == (args.annotator is not None):
        print(
            "crlhf-store revoke-token: give --stdin (the token on standard input) "
            "or --annotator NAME",
            file=sys.stderr,
        )
        return 2
    token = sys.stdin.readline().strip() if args.stdin else None
    if args.stdin and not token:
        print("crlhf-store revoke-token: no token on standard input", file=sys.stderr)
        return 2
    db = _database(_settings(args), "revoke-token")
    try:
        with db.writing() as session:
            n = revoke_token(session, token=token, annotator=args.annotator)
    except NotFound as exc:
        print(f"crlhf-store revoke-token: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"revoked {n} token(s)")
    return 0 if n else 1


def cmd_import_honeypots(args: argparse.Namespace) -> int:
    from crlhf_store.errors import Invalid
    from crlhf_store.honeypots import import_honeypots, parse_jsonl

    try:
        honeypots = parse_jsonl(Path(args.file).read_text(encoding="utf-8").splitlines())
    except (Invalid, OSError) as exc:
        print(
            f"crlhf-store import-honeypots: {args.file}: {exc}; nothing imported", file=sys.stderr
        )
        return 1
    db = _database(_settings(args), "import-honeypots")
    with db.writing() as session:
        imported, skipped = import_honeypots(session, honeypots=honeypots)
    db.dispose()
    print(f"imported {imported} honeypot(s), {skipped} already there")
    return 0


def cmd_export_labels(args: argparse.Namespace) -> int:
    """JSONL: one label per line, with ``truth`` (1/-1) when its line is a honeypot's."""
    from crlhf_store.export import export_labels

    db = _database(_settings(args), "export-labels")
    out: TextIO = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    after, n, cursor = int(args.after or 0), 0, args.after
    try:
        while True:
            with db.writing() as session:
                page = export_labels(session, after=after, limit=5000)
            if not page.labels:
                break
            for label in page.labels:
                truth = page.honeypots.get(str(label.completion_id))
                row = label.model_dump(mode="json") | {
                    "truth": truth[label.line] if truth else None
                }
                out.write(json.dumps(row) + "\n")
            n += len(page.labels)
            cursor = page.next
            after = int(cursor or after)
    finally:
        if args.out:
            out.close()
        db.dispose()
    print(f"exported {n} label(s); resume with --after {cursor or 0}", file=sys.stderr)
    return 0


def cmd_export_dataset(args: argparse.Namespace) -> int:
    """A Hugging Face dataset of the ratings (crlhf_contract.dataset): the rewards of the
    trainer's last aggregation run, the completions and votes as they are now."""
    from crlhf_contract.dataset import DatasetExportError, ExportOptions, check_out

    from crlhf_store.dataset_export import export_dataset, need_datasets

    options = ExportOptions(
        include_honeypots=args.include_honeypots, include_authors=args.include_authors
    )
    settings = _settings(args)
    try:
        check_out(args.out, force=args.force)
        need_datasets()
        if _missing_sqlite_file(settings.resolved_database_url()):
            raise DatasetExportError(
                f"no database at {_redact(settings.resolved_database_url())}: give the "
                "--data-dir or --database-url the store was started with"
            )
        db = _database(settings, "export-dataset")
        try:
            summary = export_dataset(db, args.out, run_id=args.run, options=options)
        finally:
            db.dispose()
    except DatasetExportError as exc:
        print(f"crlhf-store export-dataset: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {summary} to {args.out} (load it with datasets.load_from_disk)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crlhf-store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        help="SQLAlchemy URL (env CRLHF_DATABASE_URL; default the SQLite file store.db in "
        "the data dir)",
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        help=f"data folder (env CRLHF_DATA_DIR, default {default_data_dir()}): the same as "
        "the store's",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the HTTP server")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument(
        "--workers",
        type=int,
        help="server processes (env CRLHF_WORKERS, default 1): more for PostgreSQL on a "
        "multi-core machine; SQLite writes one at a time whatever the count",
    )
    p.add_argument("--log-level", default="info")
    p.add_argument("--no-access-log", dest="access_log", action="store_false")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", parents=[common], help="bring the database schema up to date")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "create-annotator",
        parents=[common],
        help="create an annotator (or reuse one) and print a new token",
    )
    p.add_argument("name")
    p.add_argument("--scope", choices=["annotator", "trainer", "admin"], default="annotator")
    p.set_defaults(func=cmd_create_annotator)

    p = sub.add_parser(
        "revoke-token", parents=[common], help="revoke a token, or all of one annotator"
    )
    p.add_argument("token", nargs="?", help=argparse.SUPPRESS)  # refused: see --stdin
    p.add_argument("--stdin", action="store_true", help="read the token to revoke from stdin")
    p.add_argument("--annotator", help="revoke every token of this annotator")
    p.set_defaults(func=cmd_revoke_token)

    p = sub.add_parser("import-honeypots", parents=[common], help="import honeypots (JSONL)")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_import_honeypots)

    p = sub.add_parser("export-labels", parents=[common], help="export line ratings (JSONL)")
    p.add_argument("--out", type=Path, help="file to write (default stdout)")
    p.add_argument("--after", help="cursor to resume from")
    p.set_defaults(func=cmd_export_labels)
    _add_export_dataset(sub, common)
    return parser


def _add_export_dataset(sub, common: argparse.ArgumentParser) -> None:  # type: ignore[no-untyped-def]
    from crlhf_contract.dataset import FORMATS, add_export_options

    p = sub.add_parser(
        "export-dataset",
        parents=[common],
        help="write the ratings as a Hugging Face dataset (for TRL's KTO and others)",
        description="Write OUT/: a datasets.DatasetDict (save_to_disk; load it with "
        "datasets.load_from_disk) with the splits `kto` (prompt, completion, label, reward "
        "and its interval, one row per rewarded completion) and `lines` (each line's text, "
        "P(correct) and votes, annotators pseudonymous), and README.md, a dataset card "
        "whose license: the team fills in. Rewards and posteriors are the trainer's latest "
        "aggregation run's (the store does not aggregate); completions and votes are read "
        "from the database now. Annotator names and tokens never leave; honeypots and "
        "authors only when asked.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="a new or empty folder")
    p.add_argument("--format", choices=FORMATS, default="hf", help="hf: Hugging Face datasets")
    p.add_argument("--run", type=int, metavar="ID", help="aggregation run (default the latest)")
    add_export_options(
        p,
        honeypots_help=(
            "add the honeypots' lines, votes and truth (`lines.truth`): this tells whoever "
            "gets the dataset which snippets are honeypots"
        ),
    )
    p.set_defaults(func=cmd_export_dataset)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
