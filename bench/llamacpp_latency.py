"""Benchmark: crlhf-lsp's ``llamacpp`` backend through the real LSP against raw llama-cpp-python.

    .venv/bin/python bench/llamacpp_latency.py                 # the default model
    .venv/bin/python bench/llamacpp_latency.py --model x.gguf --repeats 5

One run, on whatever else the machine is doing, ``--threads`` llama.cpp threads (2 by default,
a laptop's share). For a 256-token and a 1,000-token Python context ending mid-line (with
code after the cursor on that line, so the suggestion is one line of at most 16 tokens):

- **LSP**: ``textDocument/inlineCompletion`` from a real client over stdio to a real
  ``crlhf-lsp`` process (``backend: "llamacpp"``), timed at the client: *cold* (a document
  whose text shares no prefix with the previous request) and *hit* (the user typed one more
  character, which the suggestion did not predict, so the model runs again and re-uses the KV
  cache of everything before it);
- **raw**: the same prompt text (built with crlhf-lsp's own prompt builder) through
  ``Llama.create_completion(max_tokens=16, stop=["\\n"], temperature=0)``, cold
  (``Llama.reset()`` first) and hit (the one-character-longer prompt after the first);
- **adapter swap**: ``LlamaCppEngine.set_adapter`` (load the GGUF LoRA file + set it),
  alternating two rank-8 adapters on q/k/v/o.

Printed: p50/p95 per row, and LSP ÷ raw as the ratio of the p50s and as the median of the
per-document ratios (the same document, hence the same tokens, on both sides). Targets
(issue 9, default model, 2 cores): hit p50 ≤ 400 ms, cold 1k p50 ≤ 2.5 s, LSP/raw ≤ 1.1,
swap ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CONTEXTS = (256, 1000)
MAX_TOKENS = 16


def sources() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = ["textwrap.py", "json/decoder.py", "shlex.py", "fnmatch.py", "argparse.py", "csv.py"]
    names += ["difflib.py", "heapq.py", "bisect.py", "calendar.py", "pprint.py", "glob.py"]
    return [(stdlib / n).read_text(encoding="utf-8") for n in names]


def document(engine, source: str, tokens: int) -> tuple[str, int, int]:
    """(text, line, character): ``tokens`` of ``source`` cut mid-line, the line's rest after."""
    ids = engine.tokenize(source)[: tokens + 40]
    text = engine.detokenize(ids)
    cut = len(engine.detokenize(ids[:tokens]))
    if "\n" not in text[cut:]:
        text += "\n"
    line_end = text.find("\n", cut)
    if not text[cut:line_end].strip():
        # Code after the cursor makes the suggestion one line (crlhf-lsp's cutter), as the
        # raw side's stop=["\n"] assumes; without it the LSP would rightly write a block.
        text = text[:cut] + " x" + text[cut:]
        line_end += 2
    prefix = text[:cut]
    # Keep the rest of the cursor's line (code after the cursor), drop what follows.
    doc = prefix + text[cut:line_end] + "\n"
    line = prefix.count("\n")
    return doc, line, len(prefix) - (prefix.rfind("\n") + 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:7.1f} ms  p95 {pct(values, 0.95) * 1000:7.1f} ms"


def unpredicted(char_after: str) -> str:
    return "q" if char_after[:1] != "q" else "z"


def raw_rows(
    model: Path, threads: int, docs, repeats: int, typed: dict[tuple[int, int], str]
) -> dict[str, list[float]]:
    """Raw timings; fills ``typed`` with the character each hit types after its cold run."""
    from crlhf_lsp.backends.llamacpp import LlamaCppBackend
    from crlhf_lsp.completion import PROMPT_BUDGET
    from crlhf_lsp.prompt import build_prompt
    from llama_cpp import Llama

    backend = LlamaCppBackend(model, n_threads=threads)  # for the prompt builder's tokenizer
    # n_threads_batch too: left out, llama-cpp-python reads prompts on every core
    # (multiprocessing.cpu_count()), and "raw at 1 thread" read them on 2 while crlhf-lsp
    # read them on 1 (the 1.66-1.91x on cold prompts that stop 21 could not explain)
    llm = Llama(
        model_path=str(model),
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    def prompt(text: str, line: int, char: int) -> str:
        lines = text.split("\n")
        prefix = "\n".join(lines[:line] + [lines[line][:char]])
        suffix = text[len(prefix) :]
        return build_prompt(
            prefix,
            suffix,
            count_tokens=backend.count_tokens,
            budget=PROMPT_BUDGET,
            fim_tokens=backend.fim_tokens,
        ).text

    def complete(p: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        out = llm.create_completion(p, max_tokens=MAX_TOKENS, stop=["\n"], temperature=0.0)
        return time.perf_counter() - t0, out["choices"][0]["text"]

    rows: dict[str, list[float]] = {}
    for size in CONTEXTS:
        cold, hit = rows.setdefault(f"cold {size}", []), rows.setdefault(f"hit {size}", [])
        for k, (text, line, char) in enumerate(docs[size][:repeats]):
            llm.reset()
            seconds, suggestion = complete(prompt(text, line, char))
            cold.append(seconds)
            lines = text.split("\n")
            # The same character on both sides: one the suggestion did not predict, so the
            # LSP cannot answer it from the suggestion on screen and runs the model again.
            typed[size, k] = unpredicted(suggestion[:1] + lines[line][char:])
            edited = lines[line][:char] + typed[size, k] + lines[line][char:]
            text2 = "\n".join(lines[:line] + [edited] + lines[line + 1 :])
            hit.append(complete(prompt(text2, line, char + 1))[0])
    backend.close()
    llm.close()
    return rows


async def lsp_rows(
    model: Path, threads: int, docs, repeats: int, typed: dict[tuple[int, int], str]
) -> dict[str, list[float]]:
    from lsp_harness import edit, inline, lsp_session, open_doc, settings_for

    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(Path(tmp), model, backend="llamacpp", maxTokens=MAX_TOKENS)
        # Whole prompts on both sides (no short first answer, crlhf_lsp.timebudget) and no
        # debounce (a wait on purpose): the replay (lsp_latency.py --replay) measures both.
        env = {
            "CRLHF_LLAMACPP_THREADS": str(threads),
            # like for like with the raw side: prompts read on --threads, not on every core
            # the machine leaves free (crlhf-lsp's default; lsp_replay.py --batch-threads)
            "CRLHF_LLAMACPP_BATCH_THREADS": str(threads),
            "CRLHF_PREFILL_TOKENS": "0",
            "CRLHF_DEBOUNCE_MS": "0",
        }
        async with lsp_session(settings, env=env) as client:
            open_doc(client, "file:///warmup.py", "import os\n")
            await inline(client, "file:///warmup.py", 1, 0)  # waits for the model to load
            n = 0
            for size in CONTEXTS:
                cold, hit = rows.setdefault(f"cold {size}", []), rows.setdefault(f"hit {size}", [])
                for k, (text, line, char) in enumerate(docs[size][:repeats]):
                    n += 1
                    uri = f"file:///bench/{n}.py"
                    open_doc(client, uri, text)
                    t0 = time.perf_counter()
                    items = await inline(client, uri, line, char)
                    cold.append(time.perf_counter() - t0)
                    first = items[0].insert_text[:1] if items else ""
                    if first == typed[size, k]:
                        raise SystemExit("the LSP predicted the typed character: not a hit row")
                    edit(client, uri, 2, (line, char), (line, char), typed[size, k])
                    t0 = time.perf_counter()
                    await inline(client, uri, line, char + 1)
                    hit.append(time.perf_counter() - t0)
    return rows


def swap_row(model: Path, threads: int, swaps: int) -> list[float]:
    import numpy as np
    from crlhf_lsp.backends.llamacpp_engine import LlamaCppEngine
    from crlhf_models.gguf_lora import convert_peft_to_gguf
    from safetensors.numpy import save_file

    engine = LlamaCppEngine(model, n_threads=threads, n_ctx=512)
    meta = engine._llm.metadata
    arch = engine.architecture
    hidden = int(meta[f"{arch}.embedding_length"])
    heads = int(meta[f"{arch}.attention.head_count"])
    kv = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    head_dim = int(meta.get(f"{arch}.attention.key_length", hidden // heads))
    layers = int(meta[f"{arch}.block_count"])
    shapes = {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv * head_dim),
        "v_proj": (hidden, kv * head_dim),
        "o_proj": (heads * head_dim, hidden),
    }
    config = {
        "model_type": arch,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
    }
    rng = np.random.default_rng(0)
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(2):
            folder = Path(tmp) / f"a{k}"
            folder.mkdir()
            tensors = {}
            for i in range(layers):
                for name, (fan_in, fan_out) in shapes.items():
                    key = f"base_model.model.model.layers.{i}.self_attn.{name}"
                    tensors[f"{key}.lora_A.weight"] = rng.normal(0, 0.02, (8, fan_in)).astype("f4")
                    tensors[f"{key}.lora_B.weight"] = rng.normal(0, 0.02, (fan_out, 8)).astype("f4")
            save_file(tensors, str(folder / "adapter_model.safetensors"))
            (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "lora_alpha": 16}')
            paths.append(convert_peft_to_gguf(folder, Path(tmp) / f"a{k}.gguf", base_config=config))
        times = [engine.set_adapter(paths[i % 2].path) for i in range(swaps)]
        engine.generate(engine.tokenize("def f(x):\n"), max_tokens=2)  # the adapter really runs
    engine.close()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .gguf file (default: crlhf_models' default model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=12, help="documents (at most 12)")
    args = parser.parse_args(argv)

    from crlhf_lsp.backends.llamacpp import resolve_gguf
    from crlhf_lsp.backends.llamacpp_engine import LlamaCppEngine

    model, name = resolve_gguf(args.model)
    engine = LlamaCppEngine(model, n_threads=args.threads)
    texts = sources()
    docs = {size: [document(engine, t, size) for t in texts] for size in CONTEXTS}
    engine.close()
    print(f"model {name} ({model.name}), {args.threads} threads, {args.repeats} repeats")

    typed: dict[tuple[int, int], str] = {}
    raw = raw_rows(model, args.threads, docs, args.repeats, typed)
    lsp = asyncio.run(lsp_rows(model, args.threads, docs, args.repeats, typed))
    # Both sides run the same documents with greedy decoding, so each document makes the
    # same tokens on both: the median of per-document ratios compares like with like,
    # where the ratio of two p50s can pair a short suggestion with a long one.
    print(
        f"{'':10} {'raw llama-cpp-python':34} {'crlhf-lsp (stdio)':34} "
        "LSP/raw: p50s  per-doc median"
    )
    for row in raw:
        ratio = statistics.median(lsp[row]) / statistics.median(raw[row])
        paired = statistics.median(a / b for a, b in zip(lsp[row], raw[row], strict=True))
        print(f"{row:10} {fmt(raw[row]):34} {fmt(lsp[row]):34} {ratio:13.2f} {paired:15.2f}")
    swaps = swap_row(model, args.threads, 10)
    print(f"adapter swap (load GGUF LoRA + set, r=8 q/k/v/o): {fmt(swaps)}")


if __name__ == "__main__":
    main()
