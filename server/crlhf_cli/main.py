"""`crlhf`: the umbrella command a newcomer types.

crlhf demo [--quick|--full] [--model M] [--work-dir DIR] [--device cpu|cuda] [--json F]
crlhf model [SPEC]        resolve a model setting (convert it once), print where it is
"""

from __future__ import annotations

import argparse
import sys


def model_main(argv: list[str]) -> int:
    from crlhf_models import ModelError, resolve_model

    parser = argparse.ArgumentParser(prog="crlhf model", description="resolve a model setting")
    parser.add_argument("spec", nargs="?", help="gemma3-270m (default), a hub id or a path")
    parser.add_argument("--verify", action="store_true", help="re-hash the GGUF")
    args = parser.parse_args(argv)
    try:
        ref = resolve_model(args.spec, verify=args.verify)
    except ModelError as exc:
        print(f"crlhf model: {exc}", file=sys.stderr)
        return 1
    print(f"model:   {ref.model_id}")
    print(f"path:    {ref.path}")
    if ref.gguf is not None:
        print(f"gguf:    {ref.gguf} (sha256 {ref.gguf_sha256})")
    if ref.licence:
        print(f"licence: {ref.licence}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="crlhf",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,  # `crlhf demo --help` is the demo's help, not this one
    )
    parser.add_argument("command", nargs="?", choices=["demo", "model"], help="what to run")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "model":
        return model_main(rest)
    from crlhf_cli.demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    sys.exit(main())
