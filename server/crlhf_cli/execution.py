"""Scenario ``execution``: the truth of each line of a completion, from running it.

The program (prompt + completion + the problem's tests) runs in the trainer's jail
(:class:`crlhf_trainer.sandbox.Sandbox`) under a tracing harness (:data:`_HARNESS`): it
compiles the program, runs its module level, then each top-level statement of the tests
on its own (one MBPP ``assert`` each), recording which of the program's lines each one
executes and, when it raises, the deepest program line in the traceback. A statement that
runs longer than :data:`TEST_SECONDS` is stopped with an exception there, so a loop that
never ends is blamed on the line it spins in.

Per non-blank line ℓ of the completion (blank lines carry no truth and are not rated):

1. it does not compile: the line of the ``SyntaxError`` is wrong, nothing else is known
   (None: the crowd rates it, the truth arm and the accuracy skip it);
2. the module level raises at line ℓ*: ℓ* is wrong, the lines that ran before it are
   correct, the rest unknown;
3. every test passes: every line is correct;
4. otherwise, with F the failing tests, f(ℓ) and p(ℓ) the failing and passing tests
   that execute ℓ, spectrum-based fault localisation (Ochiai)::

       s(ℓ) = f(ℓ) / sqrt(|F| · (f(ℓ) + p(ℓ)))

   a line that raised, or whose s(ℓ) is the largest s > 0, is wrong; any other line that
   ran (module level or a test) is correct; a line that never ran is unknown.

Nothing here compares text with a reference solution: a sensible alternative to the
reference is correct when it runs correctly, and a line repeated from the prompt is
judged by what it does. What execution cannot do is split lines that always run
together: when every test runs the whole body and one fails, the whole body is blamed.

The harness shares the program's interpreter, so a program written against it could
forge its report (as with the sandbox's sentinel): the report carries a per-run nonce and
the last report wins, which stops accidents, not a program built to fake one.
"""

from __future__ import annotations

import ast
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from crlhf_contract.schemas import completion_lines

__all__ = ["TEST_SECONDS", "Judged", "judge", "split_tests"]

TEST_SECONDS = 2
"""Wall-clock seconds one test statement may run inside the jail before it is stopped."""


class _Problem(Protocol):
    prompt: str
    tests: str


class _Sandbox(Protocol):
    def run(self, code: str) -> Any: ...


@dataclass(frozen=True)
class Judged:
    """How a completion ran, and the truth of its lines (1 correct, −1 wrong, None)."""

    passed: bool
    truth: list[int | None]
    why: str  # "passed", "syntax", "load", "tests", "no report"


_HARNESS = r"""
import json as _j, signal as _s, sys as _y
_SRC, _TESTS, _NONCE, _SECS = {src!r}, {tests!r}, {nonce!r}, {secs!r}
_NAME = "<program>"
class _Slow(Exception):
    pass
def _alarm(*_a):
    raise _Slow("slower than the test's limit")
def _last_line(e):
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
def _traced(code, g):
    seen = set()
    def tr(frame, event, arg):
        if frame.f_code.co_filename != _NAME:
            return None
        if event == "line":
            seen.add(frame.f_lineno)
        return tr
    err, ok = None, True
    _s.signal(_s.SIGALRM, _alarm)
    _s.alarm(_SECS)
    _y.settrace(tr)
    try:
        exec(code, g)
    except BaseException as e:
        ok, err = False, _last_line(e)
    finally:
        _y.settrace(None)
        _s.alarm(0)
    return {{"ok": ok, "lines": sorted(seen), "err": err}}
def _main():
    try:
        code = compile(_SRC, _NAME, "exec")
    except SyntaxError as e:
        return {{"syntax": e.lineno or 0}}
    g = {{"__name__": "__main__"}}
    out = {{"load": _traced(code, g), "tests": []}}
    if out["load"]["ok"]:
        for t in _TESTS:
            out["tests"].append(_traced(compile(t, "<test>", "exec"), g))
    return out
_r = _main()
_y.stderr.write("\n" + _NONCE + _j.dumps(_r) + "\n")
_y.stderr.flush()
"""


def split_tests(tests: str) -> list[str]:
    """The top-level statements of a problem's tests, each its own source (one test each)."""
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return [tests]
    return [ast.get_source_segment(tests, node) or "" for node in tree.body]


def judge(problem: _Problem, completion: str, sandbox: _Sandbox) -> Judged:
    """Run ``completion`` under the harness in ``sandbox``; the rule of the module docstring."""
    nonce = f"@@crlhf-trace-{secrets.token_hex(8)}@@"
    src = f"{problem.prompt}{completion}\n"
    harness = _HARNESS.format(
        src=src, tests=split_tests(problem.tests), nonce=nonce, secs=TEST_SECONDS
    )
    result = sandbox.run(harness)
    report = _report(result.stderr, nonce)
    lines = completion_lines(completion)
    first = problem.prompt.count("\n") + 1  # the program line of the completion's first line
    blank = [not line.strip() for line in lines]
    if report is None:  # killed (time, memory, output): the whole completion failed
        return Judged(False, [None if b else -1 for b in blank], "no report")
    return _rule(report, first, blank)


def _report(stderr: str, nonce: str) -> dict[str, Any] | None:
    at = stderr.rfind(nonce)
    if at < 0:
        return None
    try:
        return json.loads(stderr[at + len(nonce) :].split("\n", 1)[0])
    except ValueError:
        return None


def _rule(report: dict[str, Any], first: int, blank: Sequence[bool]) -> Judged:
    n = len(blank)

    def index(program_line: int | None) -> int | None:
        if program_line is None:
            return None
        return min(max(program_line - first, 0), n - 1)

    def out(values: dict[int, int], passed: bool, why: str) -> Judged:
        return Judged(passed, [None if blank[i] else values.get(i) for i in range(n)], why)

    if "syntax" in report:
        return out({index(report["syntax"]) or 0: -1}, False, "syntax")
    load = report["load"]
    ran = {i for line in load["lines"] if 0 <= (i := line - first) < n}
    if not load["ok"]:
        bad = index(load["err"])
        values = {i: 1 for i in ran}
        if bad is not None:
            values[bad] = -1
        return out(values, False, "load")
    tests = report["tests"]
    for t in tests:
        ran |= {i for line in t["lines"] if 0 <= (i := line - first) < n}
    if all(t["ok"] for t in tests):
        return out({i: 1 for i in range(n)}, True, "passed")
    values = {i: 1 for i in ran}
    for i in _blamed(tests, first, n):
        values[i] = -1
    return out(values, False, "tests")


def _blamed(tests: Sequence[dict[str, Any]], first: int, n: int) -> set[int]:
    """Lines that raised, and the lines of the largest Ochiai score (module docstring)."""
    failing = [t for t in tests if not t["ok"]]
    blamed = {t["err"] - first for t in failing if t["err"] is not None}
    f: dict[int, int] = {}
    p: dict[int, int] = {}
    for t in tests:
        for line in t["lines"]:
            i = line - first
            if 0 <= i < n:
                (p if t["ok"] else f)[i] = (p if t["ok"] else f).get(i, 0) + 1
    scores = {i: f[i] / math.sqrt(len(failing) * (f[i] + p.get(i, 0))) for i in f}
    if scores:
        top = max(scores.values())
        blamed |= {i for i, s in scores.items() if math.isclose(s, top)}
    return {i for i in blamed if 0 <= i < n}
