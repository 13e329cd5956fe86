"""Where a completion ends, and what of it repeats the code after the cursor.

- Cursor mid-line (code after it on the same line): one line.
- Otherwise an indentation-closed block: the completion stops before the first line that
  dedents below the cursor's line, or that comes back to its indentation after a deeper
  block (``else:``/``elif``/``except``/``finally``/closing brackets continue it), after two
  blank lines in a row, or after ``MAX_LINES`` lines.
- A line repeating the line before it ends the completion (small models loop).
- A tail that repeats the suffix (the ``)`` already after the cursor, or the next lines
  of the file) is trimmed; an empty or whitespace-only result is dropped.

What an instruct model (Qwen2.5-Coder-*-Instruct) writes after the code ends it too; the
text before stays, so the kept text is always a prefix of what the model wrote:

- a special token's text (``<|im_end|>``, ``<|endoftext|>``, ``<|file_sep|>``, any
  ``<|…|>``, ``<fim_…>``, ``<end_of_turn>``, …) ends the completion where it starts, even
  mid-line (backends that drop special tokens from the text stop on the token itself);
- a markdown code fence (a line starting with three backticks) outside a triple-quoted
  string ends it before that line;
- an assistant's explanation ends it before that line: a line at or left of the block's
  indentation, after a blank line, outside a triple-quoted string, that opens like one
  ("Here is", "In this code", "This function", "The code", "Explanation", …) and quotes
  code in backticks or ends with a colon ("In this solution, `top_k` uses a heap.").

``Cutter.is_complete`` answers, after each generated token, whether more tokens could change
the result: the backend stops there instead of running to ``maxTokens``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINES = 16
CONTINUATIONS = ("else", "elif", "except", "finally", ")", "]", "}", "case ")

SPECIAL_TOKEN = re.compile(
    r"<\|[A-Za-z0-9_]+\|>"  # Qwen, StarCoder 2, GPT: <|im_end|> <|endoftext|> <|file_sep|>
    r"|<(?:fim_(?:prefix|suffix|middle|pad)|file_sep|repo_name|gh_stars)>"  # StarCoder
    r"|<｜[^｜\n]{1,32}｜>"  # DeepSeek-Coder: <｜fim▁hole｜> <｜end▁of▁sentence｜>
    r"|<(?:start|end)_of_turn>"  # Gemma
)
"""The text of a control token: no completion contains one."""
FENCE = "```"
EXPLANATION = re.compile(
    r"(?:\*\*)?(?:Here is|Here's|Here are|In this |In the above|This (?:code|function|"
    r"solution|implementation|script|program|method|class|will|should|way)|The (?:code|"
    r"function|above|output|solution|implementation)|Explanation|I hope|Let me|Note that|"
    r"Sure[,!]|Certainly|To use |You can )"
)
"""How an assistant starts to talk about the code it wrote (see the module docstring)."""
EXPLANATION_END = re.compile(r"`[^`\n]+`|:\**\s*$")
TRIPLE_QUOTES = re.compile(r'"""|\'\'\'')


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


@dataclass(frozen=True)
class Cutter:
    prefix_line: str
    """The text of the cursor's line before the cursor."""
    suffix_line: str
    """The text of the cursor's line after the cursor."""
    in_string: bool = False
    """The cursor is inside a triple-quoted string (a docstring may say "This function"):
    an odd number of triple quotes before it, its own line included."""

    @classmethod
    def around(cls, prefix: str, suffix: str) -> Cutter:
        """The cutter for a cursor between ``prefix`` and ``suffix`` (the whole document)."""
        line_prefix, line_suffix = prefix.rsplit("\n", 1)[-1], suffix.split("\n", 1)[0]
        return cls(line_prefix, line_suffix.rstrip("\r"), inside_triple_quotes(prefix))

    @property
    def single_line(self) -> bool:
        return self.suffix_line.strip() != ""

    def cut(self, text: str) -> tuple[str, bool]:
        """(the kept text, whether it is final whatever comes next)."""
        special = SPECIAL_TOKEN.search(text)
        if special is not None:
            return self.cut(text[: special.start()])[0], True
        if self.single_line:
            head, newline, _ = text.partition("\n")
            return head, bool(newline)
        lines = text.split("\n")
        if lines[0].lstrip().startswith(FENCE) and not (self.prefix_line.strip() or self.in_string):
            return "", True
        first = self.prefix_line + lines[0] if not self.prefix_line.strip() else self.prefix_line
        base = _indent(first)
        deeper = False
        blanks = 0
        previous = lines[0].strip()
        in_string = self.in_string != _odd_quotes(lines[0])
        for i, line in enumerate(lines[1:], start=1):
            last = i == len(lines) - 1
            if not line.strip():
                blanks += 1
                if blanks >= 2 and not last:
                    return "\n".join(lines[:i]), True
                continue
            if not in_string and (
                line.lstrip().startswith(FENCE)
                or (blanks and _indent(line) <= base and _explains(line))
            ):
                return "\n".join(lines[:i]), True
            in_string = in_string != _odd_quotes(line)
            blanks = 0
            if line.strip() == previous and not last:  # a model repeating itself
                return "\n".join(lines[:i]), True
            previous = line.strip()
            indent = _indent(line)
            ends = indent < base or (
                indent == base and deeper and not line.lstrip().startswith(CONTINUATIONS)
            )
            if ends:
                return "\n".join(lines[:i]), True
            deeper = deeper or indent > base
            if i >= MAX_LINES:
                return "\n".join(lines[:i]), True
        return text, False

    def is_complete(self, text: str) -> bool:
        return self.cut(text)[1]

    def finish(self, text: str, suffix: str) -> str:
        """The final completion text: cut, suffix overlap trimmed, trailing space dropped."""
        kept, _ = self.cut(text)
        kept = _trim_suffix_overlap(kept, suffix, self.single_line).rstrip()
        return kept if kept.strip() else ""


def inside_triple_quotes(prefix: str) -> bool:
    """Whether the end of ``prefix`` is inside a triple-quoted string (Python; a count of
    the quotes, which ignores quotes in comments and strings)."""
    return _odd_quotes(prefix)


def _odd_quotes(line: str) -> bool:
    return len(TRIPLE_QUOTES.findall(line)) % 2 == 1


def _explains(line: str) -> bool:
    """An assistant talking about the code: an opener, and code in backticks or a colon."""
    text = line.strip()
    return bool(EXPLANATION.match(text)) and bool(EXPLANATION_END.search(text))


def _trim_suffix_overlap(text: str, suffix: str, single_line: bool) -> str:
    if single_line:
        rest = suffix.split("\n", 1)[0].rstrip()
        for k in range(min(len(rest), len(text)), 0, -1):
            if text.endswith(rest[:k]):
                return text[:-k]
        return text
    following = [line.strip() for line in suffix.split("\n") if line.strip()]
    lines = text.split("\n")
    for j in range(1, len(lines)):
        tail = [line.strip() for line in lines[j:] if line.strip()]
        if tail and tail == following[: len(tail)]:
            return "\n".join(lines[:j])
    return text
