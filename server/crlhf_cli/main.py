"""`crlhf`: the umbrella command a newcomer types (`crlhf demo`, `crlhf --help`)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crlhf", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["demo"], help="what to run")
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from crlhf_cli.demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    sys.exit(main())
