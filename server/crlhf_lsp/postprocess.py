"""Where a completion ends, and what of it repeats the code after the cursor.

- Cursor mid-line (code after it on the same line): one line.
- Otherwise an indentation-closed block: the completion stops before the first line that
  dedents below the cursor's line, or that comes back to its indentation after a deeper
  block (``else:``/``elif``/``except``/``finally``/closing brackets continue it), after two
  blank lines in a row, or after ``MAX_LINES`` lines.
- A line repeating the line before it ends the completion (small models loop).
- A tail that repeats the suffix (the ``)`` already after the cursor, or the next lines
  of the file) is trimmed; an empty or whitespace-only result is dropped.

``Cutter.is_complete`` answers, after each generated token, whether more tokens could change
the result: the backend stops there instead of running to ``maxTokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINES = 16
CONTINUATIONS = ("else", "elif", "except", "finally", ")", "]", "}", "case ")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


@dataclass(frozen=True)
class Cutter:
    prefix_line: str
    """The text of the cursor's line before the cursor."""
    suffix_line: str
    """The text of the cursor's line after the cursor."""

    @classmethod
    def around(cls, prefix: str, suffix: str) -> Cutter:
        return cls(prefix.rsplit("\n", 1)[-1], suffix.split("\n", 1)[0])

    @property
    def single_line(self) -> bool:
        return self.suffix_line.strip() != ""

    def cut(self, text: str) -> tuple[str, bool]:
        """(the kept text, whether it is final whatever comes next)."""
        if self.single_line:
            head, newline, _ = text.partition("\n")
            return head, bool(newline)
        lines = text.split("\n")
        first = self.prefix_line + lines[0] if not self.prefix_line.strip() else self.prefix_line
        base = _indent(first)
        deeper = False
        blanks = 0
        previous = lines[0].strip()
        for i, line in enumerate(lines[1:], start=1):
            last = i == len(lines) - 1
            if not line.strip():
                blanks += 1
                if blanks >= 2 and not last:
                    return "\n".join(lines[:i]), True
                continue
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
