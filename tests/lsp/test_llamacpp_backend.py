"""The llamacpp engine on a tiny GGUF written by the tests: tokens, log-probs, cache, cancel."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from crlhf_lsp.backends.llamacpp_engine import (  # noqa: E402
    BACKGROUND_CHUNK,
    PREFILL_CHUNK,
    LlamaCppEngine,
    LlamaCppError,
)
from tiny_gguf import build_tiny_gguf  # noqa: E402
from tiny_model import build_tiny_model  # noqa: E402


def code_samples() -> list[str]:
    """Real code, plus the cases tokenizers get wrong: tabs, CRLF, non-ASCII."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    real = (stdlib / "textwrap.py").read_text(encoding="utf-8")[:4000]
    return [
        real,
        real.replace("\n", "\r\n"),
        real.replace("    ", "\t"),
        "all:\n\tgcc -O2 -o app main.c\n\t@echo done\r\n",
        "def grüße(name):\n    return f'Grüß Gott, {name} — ça va? 日本語 🙂'\n",
        "s = 'naïve café'  # e\u0301 combining, ß, Ω, кириллица\n\n\n   \t \n",
        "  leading spaces and trailing   ",
        "x=1;y=2\r\n\r\nz = x+y\t# sum\n",
    ]


@pytest.fixture(scope="module")
def tiny_gguf() -> Path:
    return build_tiny_gguf()


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> LlamaCppEngine:
    engine = LlamaCppEngine(tiny_gguf, n_ctx=2048, n_threads=2)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf_model():
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    return AutoModelForCausalLM.from_pretrained(build_tiny_model()).eval()


def hf_logprobs(model, ids: list[int]) -> np.ndarray:
    """Log-probs of the next token after every prefix of ``ids`` (rows), by transformers."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, dim=-1).numpy()


def test_token_ids_equal_the_transformers_tokenizer_from_the_same_gguf(engine, tiny_gguf):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    for text in code_samples():
        ours = engine.tokenize(text)
        assert ours == hf(text, add_special_tokens=False)["input_ids"], text[:60]
        assert engine.detokenize(ours) == text
    fim = "<|fim_prefix|>def add(a, b):\n\t<|fim_suffix|>\r\n<|fim_middle|>"
    assert engine.tokenize(fim, special=True) == hf(fim, add_special_tokens=False)["input_ids"]
    assert engine.token_id("<|fim_middle|>") == hf.convert_tokens_to_ids("<|fim_middle|>")


def test_greedy_tokens_and_logprobs_match_transformers(engine, hf_model):
    prompt = engine.tokenize("def fib(n):\n    if n < 2:\n")
    result = engine.generate(prompt, max_tokens=12)
    assert result.prompt_token_ids == prompt
    assert len(result.token_ids) == len(result.logprobs) > 0
    ids = prompt + result.token_ids
    reference = hf_logprobs(hf_model, ids)
    for i, (token, logprob) in enumerate(zip(result.token_ids, result.logprobs, strict=True)):
        row = reference[len(prompt) - 1 + i]
        assert token == int(np.argmax(row))  # greedy under both
        assert logprob == pytest.approx(row[token], abs=1e-3)
    assert result.text == engine.detokenize(result.token_ids)


def test_prefix_reuse_evaluates_only_the_new_tokens_and_changes_nothing(engine):
    base = engine.tokenize("class Stack:\n    def __init__(self):\n        self.items = []\n\n")
    engine.generate(base, max_tokens=8)
    typed = base + engine.tokenize("    def")
    warm = engine.generate(typed, max_tokens=8)
    assert warm.reused_tokens >= len(base)
    engine.reset()
    cold = engine.generate(typed, max_tokens=8)
    assert cold.reused_tokens == 0
    assert warm.token_ids == cold.token_ids
    np.testing.assert_allclose(warm.logprobs, cold.logprobs, atol=1e-4)
    # The same prompt again: everything but the last prompt token comes from the cache.
    again = engine.generate(typed, max_tokens=8)
    assert again.reused_tokens == len(typed) - 1
    assert again.token_ids == cold.token_ids


def test_a_prefilled_prompt_is_reused_whole_and_generates_as_if_read_there(engine):
    """The whole prompt read at a pause (crlhf_lsp.timebudget): the next request reads only
    its last token, and says what a cold one says."""
    prompt = engine.tokenize("import os\n\n\ndef main():\n    print(os.getcwd())\n")
    engine.reset()
    assert engine.cached_prefix(prompt) == 0
    assert engine.prefill(prompt)
    assert engine.cached_prefix(prompt) == len(prompt)
    warm = engine.generate(prompt, max_tokens=6)
    assert warm.reused_tokens == len(prompt) - 1
    engine.reset()
    assert engine.generate(prompt, max_tokens=6).token_ids == warm.token_ids
    assert not engine.prefill(prompt + prompt, cancelled=lambda: True)


def test_a_prefill_nobody_waits_for_can_be_stopped_every_few_tokens(engine):
    """A warm-up or a whole prompt read at a pause is asked whether to stop every
    BACKGROUND_CHUNK tokens: the next request waits for ~0.1 s of its work, not ~0.5 s."""
    prompt = engine.tokenize("total = total + 1\n" * 90)
    assert len(prompt) > 2 * PREFILL_CHUNK
    engine.reset()
    polls = 0

    def cancelled() -> bool:
        nonlocal polls
        polls += 1
        return False

    assert engine.prefill(prompt, cancelled=cancelled)
    assert polls == math.ceil(len(prompt) / BACKGROUND_CHUNK)
    assert engine.cached_prefix(prompt) == len(prompt)


def test_cancellation_stops_between_tokens(engine):
    prompt = engine.tokenize("def main():\n")
    polls = 0

    def cancelled() -> bool:
        nonlocal polls
        polls += 1
        return polls > 4  # 1 poll before the prefill chunk, then 1 per token

    result = engine.generate(prompt, max_tokens=50, cancelled=cancelled)
    assert result.cancelled and result.finish_reason == "cancelled"
    assert len(result.token_ids) == 3
    before = engine.generate(prompt, max_tokens=3)
    assert result.token_ids == before.token_ids  # the partial result is a true prefix


def test_a_seed_makes_a_sample_repeatable_and_another_seed_draws_another(engine):
    prompt = engine.tokenize("def main():\n")
    draws = {
        seed: [
            engine.generate(prompt, max_tokens=12, temperature=1.5, seed=seed).token_ids
            for _ in range(2)
        ]
        for seed in (1, 2, 3)
    }
    assert all(a == b for a, b in draws.values())  # the same seed, the same sample
    assert len({tuple(a) for a, _ in draws.values()}) > 1  # the bench's samples differ


def test_cancellation_before_the_prefill_evaluates_nothing(engine):
    result = engine.generate(engine.tokenize("import os\n" * 300), cancelled=lambda: True)
    assert result.cancelled and result.token_ids == [] and result.logprobs == []


def test_stop_callback_and_bad_input(engine, tmp_path):
    result = engine.generate(engine.tokenize("def add(a, b):\n"), stop=lambda t: "\n" in t)
    assert result.finish_reason in {"stop", "eos", "length"}
    if result.finish_reason == "stop":
        assert result.text.endswith("\n") or "\n" in result.text
    with pytest.raises(LlamaCppError, match="empty prompt"):
        engine.generate([])
    with pytest.raises(LlamaCppError, match="no GGUF model"):
        LlamaCppEngine(tmp_path / "missing.gguf")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(LlamaCppError, match="cannot load"):
        LlamaCppEngine(garbage)


def test_auto_picks_llamacpp_for_a_gguf_on_the_cpu(tiny_gguf, tmp_path):
    from crlhf_lsp.backends import create_backend
    from crlhf_lsp.backends.llamacpp import LlamaCppBackend
    from crlhf_lsp.backends.local import LocalBackend
    from crlhf_lsp.settings import Settings

    settings = Settings(outboxPath=str(tmp_path / "outbox.sqlite3"))
    assert settings.backend == "auto"
    backend = create_backend(settings.merged({"model": str(tiny_gguf)}))
    assert isinstance(backend, LlamaCppBackend)
    assert backend.fim_tokens == ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
    backend.close()
    folder = create_backend(settings.merged({"model": str(build_tiny_model())}))
    assert isinstance(folder, LocalBackend)


def test_the_backend_takes_the_ids_the_server_counted(tiny_gguf):
    """``encode`` is what the server counts the prompt with; handed back as ``prompt_ids``
    they are the model's input as they are (no second tokenization)."""
    import threading

    from crlhf_lsp.backends.base import GenerationRequest
    from crlhf_lsp.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(tiny_gguf, n_threads=2)
    prompt = "def add(a, b):\n    return"
    ids = backend.encode(prompt)
    assert ids == backend.prompt_ids(prompt) and len(ids) == backend.count_tokens(prompt) + int(
        backend.engine.add_bos
    )
    plain = backend.generate(GenerationRequest(prompt, max_tokens=4), threading.Event())
    given = backend.generate(
        GenerationRequest(prompt, max_tokens=4, prompt_ids=ids), threading.Event()
    )
    assert given.prompt_token_ids == plain.prompt_token_ids == ids
    assert given.token_ids == plain.token_ids
    other = ids[:-1]  # ids win over the text: the model reads what it was handed
    shorter = backend.generate(
        GenerationRequest(prompt, max_tokens=4, prompt_ids=other), threading.Event()
    )
    assert shorter.prompt_token_ids == other
    backend.close()


def test_a_prompt_is_read_on_every_core_the_machine_leaves_free(tiny_gguf, tmp_path) -> None:
    """The engine asks its spare-core reader before each prompt somebody waits for and sets
    llama.cpp's batch threads; work nobody waits for goes back to the default share."""
    import llama_cpp
    from crlhf_lsp.backends.spare_cores import SpareCores

    stat, wall = tmp_path / "stat", [0.0]
    stat.write_text("cpu  100 0 0 900 0 0 0 0 0 0\n")
    spare = SpareCores(stat_path=stat, cores=3, our_cpu=lambda: 0.0, clock=lambda: wall[0])
    engine = LlamaCppEngine(tiny_gguf, n_ctx=512, n_threads=1, spare_cores=spare)
    try:
        ids = engine.tokenize("def add(a, b):\n    return", add_bos=True)
        wall[0] += 1.0  # nobody else busy in that second
        result = engine.generate(ids, max_tokens=2)
        assert result.timings["batch_threads"] == 3
        assert llama_cpp.llama_n_threads_batch(engine._llm.ctx) == 3
        assert llama_cpp.llama_n_threads(engine._llm.ctx) == 1  # generation keeps its share
        engine.prefill(engine.tokenize("x = 1\n" * 20, add_bos=True))
        assert llama_cpp.llama_n_threads_batch(engine._llm.ctx) == 1
        wall[0] += 1.0
        stat.write_text("cpu  400 0 0 900 0 0 0 0 0 0\n")  # 3 core-seconds of others' work
        assert engine.generate(ids, max_tokens=2).timings["batch_threads"] == 1
    finally:
        engine.close()


def test_llama_cpp_warnings_go_to_logging_not_across_the_terminal(tiny_gguf, capfd, caplog):
    """llama-cpp-python reads ggml's WARN (3) as an error and prints it even with
    verbose=False: a LoRA on the default model's Q4 weights put 27 lines across the demo's
    progress bars. Here a context longer than the tiny model's training length makes
    llama.cpp warn; the warning must reach the ``crlhf_lsp.llamacpp`` logger, not stderr."""
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="crlhf_lsp.llamacpp"):
        engine = LlamaCppEngine(tiny_gguf, n_ctx=8192, n_threads=1)
        engine.close()
    assert "n_ctx_train" not in capfd.readouterr().err
    warned = [r for r in caplog.records if r.name == "crlhf_lsp.llamacpp"]
    assert any("n_ctx_train" in r.getMessage() and r.levelname == "WARNING" for r in warned)
