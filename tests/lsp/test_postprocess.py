"""Where an instruct model's completion ends: special tokens, markdown fences, explanations.

Small text cases, no model: the texts are what Qwen2.5-Coder-0.5B-Instruct wrote (greedy,
llama.cpp) on such prompts, or the same shapes. And where any completion ends: at the end
of the line mid-line, where its block closes, before the suffix or a repeat.
"""

from __future__ import annotations

import pytest
from crlhf_lsp.postprocess import Cutter, inside_triple_quotes


def finish(cutter: Cutter, text: str, suffix: str = "") -> str:
    return cutter.finish(text, suffix)


def test_fim_answer_stops_before_the_model_repeats_the_file() -> None:
    """Asked to fill the middle of top_k: the body, then the suffix written again."""
    text = "    return heapq.nlargest(k, items)\n\n\nprint(top_k([3, 1, 4, 1, 5], 3))\n"
    suffix = "\n\n\nprint(top_k([3, 1, 4, 1, 5], 2))\n"
    assert finish(Cutter("", ""), text, suffix) == "    return heapq.nlargest(k, items)"


@pytest.mark.parametrize(
    ("marker", "after"),
    [
        ("<|im_end|>", "\n<|im_start|>assistant\nThis code"),
        ("<|endoftext|>", "Human: thanks"),
        ("<|file_sep|>", "utils.py\nimport os\n"),
        ("<|fim_middle|>", "    pass"),
        ("<|fim_pad|>", ""),
        ("<file_sep>", "b.py"),
        ("<｜end▁of▁sentence｜>", "x"),
        ("<end_of_turn>", "\n<start_of_turn>user"),
    ],
)
def test_a_special_token_ends_the_completion_where_it_starts(marker: str, after: str) -> None:
    block = Cutter("    ", "")
    text = "return s[::-1]" + marker + after
    assert block.cut(text) == ("return s[::-1]", True)
    assert finish(block, "if not s:\n        return s\n    " + marker + after) == (
        "if not s:\n        return s"
    )
    one_line = Cutter("print(mean(", ")")
    assert finish(one_line, "xs" + marker + after, ")\n") == "xs"


def test_a_special_token_still_arriving_does_not_end_it_yet() -> None:
    cutter = Cutter("", "")
    assert not cutter.is_complete("x = 1\n<|im_")
    assert cutter.is_complete("x = 1\n<|im_end|>")


def test_a_closing_fence_ends_the_code_and_what_follows_is_dropped() -> None:
    text = "import heapq\nimport os\n```\n\nThis code imports `heapq` and `os`.\n"
    assert Cutter("", "").cut(text) == ("import heapq\nimport os", True)
    ramble = (
        "0\nfor i in range(len(x)):\n    total += x[i]\nprint(total)  # Output: 6\n```\n\n"
        "In this code, we first define a list `x` with three elements."
    )
    assert finish(Cutter("total = ", ""), ramble) == (
        "0\nfor i in range(len(x)):\n    total += x[i]"
    )


def test_a_completion_that_opens_a_fence_is_dropped() -> None:
    """Keeping the code after the fence would make the text no prefix of the tokens."""
    cutter = Cutter("", "")
    assert cutter.cut("```python\ndef f():\n    pass\n```") == ("", True)
    assert cutter.is_complete("```")
    assert not cutter.is_complete("``")
    assert finish(cutter, "```python\ndef f():\n    pass\n") == ""


def test_an_explanation_after_flat_code_ends_it() -> None:
    cutter = Cutter("", "")
    text = "x = [1, 2, 3]\nprint(sum(x))\n\nIn this code, we sum the list `x` with `sum`."
    assert cutter.cut(text) == ("x = [1, 2, 3]\nprint(sum(x))\n", True)
    here = "words.sort(key=len)\n\nHere is the code sorted by length:\n"
    assert finish(cutter, here) == "words.sort(key=len)"
    bold = "total = 0\n\n**Explanation:**\n- `total` starts at 0"
    assert finish(cutter, bold) == "total = 0"


def test_code_and_prose_that_merely_look_alike_are_kept() -> None:
    cutter = Cutter("", "")
    code = 'x = 1\n\nprint("Here is `x`:")\nThese = 2\n'
    assert finish(cutter, code) == 'x = 1\n\nprint("Here is `x`:")\nThese = 2'
    # deeper than the block: part of it (a comment, a string's continuation)
    nested = "def f():\n\n    Here is `x`: a typo the user will see\n"
    assert "Here is" in finish(cutter, nested)
    # an opener without code in backticks or a closing colon is not enough
    assert finish(cutter, "y = 2\n\nThe code above\n") == "y = 2\n\nThe code above"


def test_a_docstring_may_say_this_function_and_hold_a_fence() -> None:
    assert inside_triple_quotes('def mean(xs):\n    """')
    assert not inside_triple_quotes('def mean(xs):\n    """The mean."""\n    ')
    assert inside_triple_quotes("s = '''\n")
    cutter = Cutter("    ", "", in_string=True)
    doc = (
        "Return the mean of ``xs``.\n\n    This function uses `statistics.fmean`.\n\n"
        '    ```python\n    mean([1, 2])\n    ```\n    """'
    )
    assert finish(cutter, doc) == doc
    # once the docstring is closed, the rules apply again
    after = doc + "\n    return sum(xs) / len(xs)\n```\nThis function returns `mean`."
    assert finish(cutter, after) == doc + "\n    return sum(xs) / len(xs)"
    # a docstring the completion itself opens
    opened = '"""Sum.\n\n    This function adds `a` and `b`.\n    """\n    return a + b'
    assert finish(Cutter("    ", ""), opened) == opened


def test_mid_line_completion_is_one_line_without_the_suffix_repeated() -> None:
    cut = Cutter("print(mean(", ")")
    assert cut.single_line
    assert cut.is_complete("values))\nmore")
    assert cut.finish("values))\nmore", ")\n") == "values)"


def test_block_ends_when_its_indentation_closes() -> None:
    cut = Cutter("    ", "")
    text = "total = sum(values)\n    return total\n\ndef other():\n    pass"
    assert cut.finish(text, "") == "total = sum(values)\n    return total"
    assert not cut.is_complete("total = sum(values)\n    ret")
    top = Cutter("", "")
    code = "def f(x):\n    if x:\n        return 1\n    else:\n        return 2\ndef g():"
    assert (
        top.finish(code, "")
        == "def f(x):\n    if x:\n        return 1\n    else:\n        return 2"
    )


def test_repeats_and_empty_results_are_dropped() -> None:
    cut = Cutter("", "")
    assert cut.finish("a = 1\nb()\nb()\nb()", "") == "a = 1\nb()"
    assert cut.finish("   \n  ", "") == ""
    assert Cutter("    ", "").finish("x = 1\n    y = 2", "\n    y = 2\n") == "x = 1"
