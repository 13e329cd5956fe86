"""``python -m crlhf_store [command …]``: the admin CLI; with no command, ``serve``."""

from __future__ import annotations

import sys

from crlhf_store.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["serve"]))
