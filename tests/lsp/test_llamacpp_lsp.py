"""crlhf-lsp with ``backend: "llamacpp"`` end to end: a real server over stdio, the tiny GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from lsp_harness import inline, lsp_session, open_doc, request, settings_for  # noqa: E402
from tiny_gguf import build_tiny_gguf  # noqa: E402

URI = "file:///work/demo.py"
SOURCE = "import os\n\n\ndef mean(values):\n    "


async def test_inline_completion_through_the_llamacpp_backend(tmp_path: Path) -> None:
    model = build_tiny_gguf()
    settings = settings_for(tmp_path, model, backend="llamacpp")
    async with lsp_session(settings) as client:
        open_doc(client, URI, SOURCE)
        items = await inline(client, URI, 4, 4)
        assert len(items) == 1
        assert items[0].insert_text.strip()
        assert items[0].command.command == "crlhf.accepted"
        status = await request(client, "crlhf/status")
        assert status["model"] == str(model)


async def test_a_missing_gguf_is_reported_not_fatal(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, tmp_path / "missing.gguf", backend="llamacpp")
    async with lsp_session(settings) as client:
        open_doc(client, URI, SOURCE)
        assert await inline(client, URI, 4, 4) == []
