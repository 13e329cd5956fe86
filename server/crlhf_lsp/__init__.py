"""crlhf-lsp: completions from the team's model, per-line ratings, hot-swapped adapters.

Run ``crlhf-lsp`` (LSP over stdio); see :mod:`crlhf_lsp.features` for the methods it serves
and :mod:`crlhf_lsp.settings` for its settings.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
