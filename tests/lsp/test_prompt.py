"""crlhf_lsp.prompt: FIM tokens per model family, and a prefix cut in whole chunks so
consecutive prompts share their beginning (and the KV cache)."""

from __future__ import annotations

from crlhf_lsp.prompt import CHUNK_LINES, build_prompt, detect_fim_tokens


def words(text: str) -> int:
    return len(text.split())


def test_fim_tokens_are_detected_per_family() -> None:
    assert detect_fim_tokens({"<|fim_prefix|>": 1, "<|fim_suffix|>": 2, "<|fim_middle|>": 3})
    assert detect_fim_tokens({"▁<PRE>": 1, "▁<SUF>": 2, "▁<MID>": 3}) == ("<PRE>", "<SUF>", "<MID>")
    assert detect_fim_tokens({"a": 1}) is None


def test_prompt_uses_fim_only_with_code_after_the_cursor() -> None:
    fim = ("<P>", "<S>", "<M>")
    plain = build_prompt("x = ", "\n\n", count_tokens=words, fim_tokens=fim)
    assert plain.text == "x = " and not plain.fim
    p = build_prompt("x = f(", ")\ny = 2\n", count_tokens=words, fim_tokens=fim)
    assert p.text == "<P>x = f(<S>)\ny = 2\n<M>" and p.fim


def test_prefix_is_cut_in_whole_chunks_so_consecutive_prompts_share_it() -> None:
    lines = [f"line {i} a b c" for i in range(1000)]
    a = build_prompt("\n".join(lines), "", count_tokens=words, budget=400).text
    b = build_prompt("\n".join(lines) + " d", "", count_tokens=words, budget=400).text
    assert words(a) <= 400 and b.startswith(a)
    first = int(a.split()[1])
    assert first % CHUNK_LINES == 0
    huge = build_prompt("x" * 10_000_000, "", count_tokens=len, budget=100)  # one huge line
    assert len(huge.text) <= 200


def test_context_from_other_files_goes_first_and_out_of_the_prefix_budget() -> None:
    lines = "\n".join(f"line {i} a b c" for i in range(1000))
    context = "# other.py\n" + "w " * 100 + "\n# here.py\n"
    p = build_prompt(lines, "", count_tokens=words, budget=400, context=context)
    assert p.text.startswith(context) and p.prefix.startswith(context)
    assert words(p.text) <= 400
    fim = ("<P>", "<S>", "<M>")
    f = build_prompt("x = f(", ")\n", count_tokens=words, fim_tokens=fim, context="# a.py\n")
    assert f.text == "<P># a.py\nx = f(<S>)\n<M>"
