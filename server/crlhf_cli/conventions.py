"""The ``conventions`` scenario: a team's code conventions, judged line by line.

The team's truth for a line is whether it keeps these conventions (a reviewer can judge
each on one line, so simulated annotators can rate them as people would):

==================  ========================================================  ============
rule                a line breaks it when it …                                example
==================  ========================================================  ============
``fstring``         formats with ``%`` or ``.format(`` instead of an f-string  ``"%s" % x``
``pathlib``         calls ``os.path.*`` instead of ``pathlib``                 ``os.path.join``
``logging``         prints in library code instead of logging                  ``print(x)``
``bare-except``     catches everything with a bare ``except:``                 ``except:``
``type-hints``      defines a function without a return annotation             ``def f(x):``
==================  ========================================================  ============

Prompts are real code: functions of the Python standard library whose original body
breaks a convention, cut inside the first line that does, just before the construct
(before a format string, before ``os.path``, after ``except``), so the model decides:
greedy Gemma 3 270M completions of random standard-library functions broke none of the
rules, and cut at a line start 94 % of its lines kept them, so such prompts would give
the crowd almost nothing to say. A format string's prompt stops before the literal
(``msg = ``), where an f-string is one choice among others: stopped after its closing
quote (until stop 25), 46 of the 60 held-out prompts left no continuation that keeps
both the rule and the code, and training pushed the model into broken text there. The
completion's first line is judged together with the part of it the prompt holds.

The standard library is split *by module* into a training side (prompts and honeypots)
and a held-out side (the evaluation's reference bodies), so no held-out function, nor
any function of its package, is ever rated or trained on.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import sysconfig
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from crlhf_contract.schemas import HoneypotIn, completion_lines

__all__ = [
    "RULES",
    "Function",
    "breaks",
    "honeypots",
    "judged_lines",
    "line_truth",
    "stdlib_functions",
    "split",
]


def _tokens(line: str) -> list[tokenize.TokenInfo]:
    tokens: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            tokens.append(tok)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a line with an open bracket: the tokens before the error are enough
    return tokens


def _formatted_string(line: str) -> tuple[int, int] | None:
    """The columns (start, end) of a string literal that ``%`` or ``.format(`` formats."""
    toks = _tokens(line)
    for a, b, c in zip(toks, toks[1:], [*toks[2:], None], strict=False):
        if a.type != tokenize.STRING or a.string[:1] in "fF" or a.string[:2] in ("rf", "fr"):
            continue
        if b.string == "%" or (b.string == "." and c is not None and c.string == "format"):
            return a.start[1], a.end[1]
    return None


RULES: dict[str, Callable[[str], bool]] = {
    # a string literal followed by % (printf-style) or .format: tokens, not a regex, so a
    # "%" inside a string or an arithmetic modulo is not mistaken for formatting
    "fstring": lambda line: _formatted_string(line) is not None,
    "pathlib": re.compile(r"\bos\.path\.").search,
    "logging": re.compile(r"^\s*print\(").search,
    "bare-except": re.compile(r"^\s*except\s*:").search,
    "type-hints": re.compile(r"^\s*(async\s+)?def\s+\w+\s*\((?!.*->).*\)\s*:\s*(#.*)?$").search,
}


def breaks(line: str) -> list[str]:
    """The rules ``line`` breaks (empty: it keeps every convention).

    >>> breaks('    msg = "%s items" % n'), breaks("    path = os.path.join(a, b)")
    (['fstring'], ['pathlib'])
    >>> breaks("def f(x):"), breaks("def f(x) -> int:"), breaks('    log.info(f"{n}")')
    (['type-hints'], [], [])
    """
    return [name for name, rule in RULES.items() if rule(line)]


def judged_lines(text: str, head: str = "") -> list[str]:
    """The lines of ``completion_lines(text)`` as a reviewer judges them: the first with
    ``head``, the part of its line that the prompt already holds."""
    lines = completion_lines(text)
    return [head + line if i == 0 else line for i, line in enumerate(lines)]


def line_truth(text: str, head: str = "") -> list[int | None]:
    """Per line of ``completion_lines(text)``: 1 keeps the conventions, −1 breaks one,
    None blank or a comment-only line (not rated). ``head`` is the start of the first
    line that the prompt already holds (judged together with it).

    >>> line_truth(' % n)\\nreturn x', head='    msg = ("%s items"')
    [-1, 1]
    """
    out: list[int | None] = []
    for line in judged_lines(text, head):
        code = line.strip()
        if not code or code.startswith("#"):
            out.append(None)
        else:
            out.append(-1 if breaks(line) else 1)
    return out


@dataclass(frozen=True)
class Function:
    """One standard-library function: its source and where its first broken line is."""

    module: str
    name: str
    source: str  # dedented, from the def line to the end of the function
    first_break: int  # index (in source lines) of the first body line that breaks a rule
    cut: int  # where in that line the prompt stops (just before the rule-breaking part)

    @property
    def head(self) -> str:
        """The part of the first rule-breaking line that the prompt holds."""
        return self.source.split("\n")[self.first_break][: self.cut]

    @property
    def prompt(self) -> str:
        """The function up to just before its first rule-breaking construct."""
        lines = self.source.split("\n")[: self.first_break]
        return f"# {self.module}\n" + "\n".join(lines) + "\n" + self.head

    @property
    def key(self) -> str:
        return f"{self.module}.{self.name}"


def _functions_of(path: Path, module: str, max_lines: int) -> Iterator[Function]:
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return
    lines = text.split("\n")
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.decorator_list:
            continue
        end = node.end_lineno or node.lineno
        if end - node.lineno + 1 > max_lines:
            continue
        body = lines[node.lineno - 1 : end]
        indent = len(body[0]) - len(body[0].lstrip())
        if any(line.strip() and len(line) - len(line.lstrip()) < indent for line in body):
            continue  # a def line continued oddly (or tabs): skip rather than mangle
        source = "\n".join(line[indent:] for line in body)
        first = _first_break(source)
        if first is not None:
            yield Function(module, node.name, source, *first)


_CUTS: dict[str, re.Pattern[str]] = {
    "pathlib": re.compile(r"(?=\bos\.path\.)"),
    "logging": re.compile(r"(?=print\()"),
    "bare-except": re.compile(r"except(?=\s*:)"),  # after the keyword
}


def _cut(rule: str, line: str) -> int:
    """Where the prompt stops in a line breaking ``rule``: just before its construct."""
    if rule == "fstring":
        # before the literal, not after its closing quote: from `msg = "%d items"` no
        # continuation keeps both the rule and the code, so a model pushed off `%` there
        # can only write broken or degenerate text; from `msg = ` an f-string is a choice
        span = _formatted_string(line)
        if span is not None:
            return span[0]
    pattern = _CUTS.get(rule)
    m = pattern.search(line) if pattern else None
    return m.end() if m else len(line) - len(line.lstrip())


def _first_break(source: str) -> tuple[int, int] | None:
    """(line, cut) of the first body line (after the def line) that breaks a rule."""
    lines = source.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip().startswith(("#", '"', "'")):
            continue
        rules = [r for r in breaks(line) if r != "type-hints"]
        if rules:
            if i < 2:
                return None  # at least one line of body context
            cuts = [_cut(rule, line) for rule in rules]
            return (i, min(cuts))  # before the first construct: the head breaks nothing
    return None


def stdlib_functions(max_lines: int = 30, root: Path | None = None) -> list[Function]:
    """Every short standard-library function with a line that breaks a convention.

    Sorted by (module, name), so the same Python gives the same list.
    """
    root = root or Path(sysconfig.get_paths()["stdlib"])
    out: list[Function] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in {"test", "idlelib", "lib2to3", "site-packages", "tkinter"}:
            continue
        if "tests" in rel.parts or rel.name.startswith("test_"):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        out.extend(_functions_of(path, module, max_lines))
    return sorted(out, key=lambda f: (f.module, f.name, f.source))


def _side(module: str, heldout_share: float) -> str:
    top = module.split(".")[0]  # a package's modules share a side
    h = int.from_bytes(hashlib.sha256(top.encode()).digest()[:4], "big") / 2**32
    return "heldout" if h < heldout_share else "train"


def split(
    functions: list[Function], heldout_share: float = 0.3
) -> tuple[list[Function], list[Function]]:
    """(train, held-out), by top-level module: never the same package on both sides."""
    train = [f for f in functions if _side(f.module, heldout_share) == "train"]
    held = [f for f in functions if _side(f.module, heldout_share) == "heldout"]
    return train, held


def honeypots(functions: list[Function], limit: int) -> list[HoneypotIn]:
    """Training-side reference code whose per-line truth the rules give: the rated part
    of each function (the lines from its first break on, a completion's length)."""
    out: list[HoneypotIn] = []
    for f in functions[:limit]:
        lines = f.source.split("\n")
        rest = [lines[f.first_break][f.cut :], *lines[f.first_break + 1 : f.first_break + 6]]
        text = "\n".join(rest).rstrip("\n")
        truth = [t if t is not None else 1 for t in line_truth(text, f.head)]
        out.append(HoneypotIn(prompt=f.prompt, text=text, truth=truth))
    return out
