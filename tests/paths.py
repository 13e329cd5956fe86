"""Where things are, for tests at any depth under ``tests/``: the repository's root and
the folder of the shared helpers and fixture data (``tests/data``, ``tests/nvim`` …)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
