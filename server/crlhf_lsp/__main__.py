"""``python -m crlhf_lsp`` is ``crlhf-lsp``."""

import sys

from crlhf_lsp.cli import main

sys.exit(main())
