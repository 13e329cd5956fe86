"""Which model serves a developer faster here: GGUF models side by side, paired per document.

    .venv/bin/python bench/model_choice.py [--models gemma3-270m,qwen2.5-coder-0.5b]
        [--repeats 12] [--threads 2]

``bench/llamacpp_latency.py`` times one model against raw llama-cpp-python; run twice on a
shared machine, two models meet different loads and their figures cannot be compared. Here
every model completes the same document back to back (the order alternating from document
to document), so a burst of load falls on all of them: the per-document ratio of their times
is the comparison, and the p50s are printed beside it.

Each document is one of llamacpp_latency's (a standard-library file cut mid-line at 256 and
1,000 tokens of the first model's tokenizer, the line's rest after the cursor), turned into
crlhf-lsp's own prompt for that model (its fill-in-the-middle form where it has one) and
completed by raw llama-cpp-python (``max_tokens=16``, ``stop=["\\n"]``, greedy): *cold*
after ``Llama.reset()``, then *hit* with one more character typed (the KV cache of everything
before it reused). Also printed: the model's prompt length in tokens and how many
suggestions were empty (a model that says nothing is fast and no help).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llamacpp_latency import CONTEXTS, MAX_TOKENS, document, fmt, sources  # noqa: E402


class Side:
    """One model: its llama.cpp context and crlhf-lsp's prompt builder for it."""

    def __init__(self, spec: str, threads: int) -> None:
        from crlhf_lsp.backends.llamacpp import LlamaCppBackend, resolve_gguf
        from llama_cpp import Llama

        self.path, self.name = resolve_gguf(spec)
        self.backend = LlamaCppBackend(self.path, n_threads=threads)
        self.llm = Llama(  # n_threads_batch: left out, prompts are read on every core
            model_path=str(self.path),
            n_ctx=4096,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self.times: dict[str, list[float]] = {}
        self.prompt_tokens: dict[str, list[int]] = {}
        self.empty = 0

    def prompt(self, text: str, line: int, char: int) -> str:
        from crlhf_lsp.completion import PROMPT_BUDGET
        from crlhf_lsp.prompt import build_prompt

        lines = text.split("\n")
        prefix = "\n".join(lines[:line] + [lines[line][:char]])
        return build_prompt(
            prefix,
            text[len(prefix) :],
            count_tokens=self.backend.count_tokens,
            budget=PROMPT_BUDGET,
            fim_tokens=self.backend.fim_tokens,
        ).text

    def complete(self, row: str, prompt: str) -> str:
        t0 = time.perf_counter()
        out = self.llm.create_completion(prompt, max_tokens=MAX_TOKENS, stop=["\n"], temperature=0)
        self.times.setdefault(row, []).append(time.perf_counter() - t0)
        self.prompt_tokens.setdefault(row, []).append(out["usage"]["prompt_tokens"])
        return out["choices"][0]["text"]

    def run(self, size: int, text: str, line: int, char: int) -> None:
        """Cold, then one typed character later (a hit on the KV cache)."""
        self.llm.reset()
        suggestion = self.complete(f"cold {size}", self.prompt(text, line, char))
        self.empty += not suggestion.strip()
        lines = text.split("\n")
        typed = "q" if (suggestion[:1] or lines[line][char : char + 1]) != "q" else "z"
        edited = lines[line][:char] + typed + lines[line][char:]
        text2 = "\n".join(lines[:line] + [edited] + lines[line + 1 :])
        self.complete(f"hit {size}", self.prompt(text2, line, char + 1))

    def close(self) -> None:
        self.backend.close()
        self.llm.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="gemma3-270m,qwen2.5-coder-0.5b",
        help="comma-separated crlhf_models names or .gguf paths; the first is the reference",
    )
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads per model")
    parser.add_argument("--repeats", type=int, default=12, help="documents (at most 12)")
    args = parser.parse_args(argv)

    sides = [Side(spec.strip(), args.threads) for spec in args.models.split(",") if spec.strip()]
    first = sides[0].backend.engine
    docs = {
        size: [document(first, t, size) for t in sources()[: args.repeats]] for size in CONTEXTS
    }
    for size in CONTEXTS:
        for k, doc in enumerate(docs[size]):
            for side in sides[::-1] if k % 2 else sides:  # alternate who runs first
                side.run(size, *doc)
    _print(sides, args)
    for side in sides:
        side.close()


def _print(sides: list[Side], args: argparse.Namespace) -> None:
    ref = sides[0]
    print(f"{args.threads} threads, {args.repeats} documents, ≤ {MAX_TOKENS} tokens, greedy")
    for side in sides:
        print(f"  {side.name}: {side.path.name}, {side.empty} empty cold suggestions")
    header = f"{'row':10} {'model':22} {'prompt tokens':>13}   {'time':34} {'÷ ' + ref.name}"
    print(header)
    for row in ref.times:
        for side in sides:
            ratio = statistics.median(
                a / b for a, b in zip(side.times[row], ref.times[row], strict=True)
            )
            tokens = statistics.median(side.prompt_tokens[row])
            print(f"{row:10} {side.name:22} {tokens:13.0f}   {fmt(side.times[row]):34} {ratio:.2f}")


if __name__ == "__main__":
    main()
