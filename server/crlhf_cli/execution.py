"""Scenario ``execution``: the truth of each line of a completion, from running it.

The program (prompt + completion + the problem's tests) runs in the trainer's jail
(:class:`crlhf_trainer.sandbox.Sandbox`) under a tracing harness (:data:`_HARNESS`): it
compiles the program, runs its module level, then each top-level statement of the tests
on its own (one MBPP ``assert`` each), recording which of the completion's lines each one
executes and, when it raises, the deepest completion line in the traceback. A statement
that runs longer than :data:`TEST_SECONDS` is stopped with an exception there (raised
again every quarter second, so a bare ``except:`` does not swallow it for good), so a
loop that never ends is blamed on the line it spins in. Tracing slows Python several
times over: a correct program that needs most of its time limit untraced can be judged
failing here (MBPP's tests take milliseconds).

Per non-blank line ℓ of the completion (blank lines carry no truth and are not rated):

0. the jail killed it before the harness reported (time, memory, output): every line is
   wrong, the program as a whole failed;
1. it does not compile: the line of the ``SyntaxError`` (past the end: the last non-blank
   line) is wrong, nothing else is known (None: the crowd rates it, the truth arm and the
   accuracy skip it);
2. the module level raises at line ℓ*: ℓ* is wrong, the lines that ran before it are
   correct, the rest unknown;
3. every test passes: every line is correct;
4. otherwise, with F the failing tests, f(ℓ) and p(ℓ) the failing and passing tests
   that execute ℓ, spectrum-based fault localisation (Ochiai)::

       s(ℓ) = f(ℓ) / sqrt(|F| · (f(ℓ) + p(ℓ)))

   a line that raised, or whose s(ℓ) is the largest s > 0, is wrong; any other line that
   ran (module level or a test) is correct; a line that never ran is unknown;
5. the failing tests ran no line of the completion (a misnamed function, a wrong number
   of parameters): the ``def``/``class`` lines that ran are wrong, nothing else is known.

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
_LO, _HI = {lo!r}, {hi!r}
_NAME = "<program>"
class _Slow(BaseException):
    pass
def _alarm(*_a):
    raise _Slow("slower than the test's limit")
def _quiet():
    _s.setitimer(_s.ITIMER_REAL, 0)
def _last_line(e):
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _NAME and _LO <= tb.tb_lineno <= _HI:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
def _traced(source, name, g):
    seen = set()
    def tr(frame, event, arg):
        if frame.f_code.co_filename != _NAME:
            return None
        if event == "line" and _LO <= frame.f_lineno <= _HI:
            seen.add(frame.f_lineno)
        return tr
    err, ok = None, True
    _s.signal(_s.SIGALRM, _alarm)
    _s.setitimer(_s.ITIMER_REAL, _SECS, 0.25)
    _y.settrace(tr)
    try:
        exec(compile(source, name, "exec"), g)
    except BaseException as e:
        _quiet()
        ok, err = False, _last_line(e)
    finally:
        _quiet()
        _y.settrace(None)
    return {{"ok": ok, "lines": sorted(seen), "err": err}}
def _main():
    try:
        compile(_SRC, _NAME, "exec")
    except SyntaxError as e:
        return {{"syntax": e.lineno or 0}}
    g = {{"__name__": "__main__"}}
    out = {{"load": _traced(_SRC, _NAME, g), "tests": []}}
    if out["load"]["ok"]:
        for t in _TESTS:
            out["tests"].append(_traced(t, "<test>", g))
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
    lines = completion_lines(completion)
    first = problem.prompt.count("\n") + 1  # the program line of the completion's first line
    harness = _HARNESS.format(
        src=src,
        tests=split_tests(problem.tests),
        nonce=nonce,
        secs=TEST_SECONDS,
        lo=first,
        hi=first + len(lines) - 1,
    )
    result = sandbox.run(harness)
    report = _report(result.stderr, nonce)
    blank = [not line.strip() for line in lines]
    if report is None:  # killed (time, memory, output): the whole completion failed
        return Judged(False, [None if b else -1 for b in blank], "no report")
    return _rule(report, first, lines)


def _report(stderr: str, nonce: str) -> dict[str, Any] | None:
    at = stderr.rfind(nonce)
    if at < 0:
        return None
    try:
        return json.loads(stderr[at + len(nonce) :].split("\n", 1)[0])
    except ValueError:
        return None


def _rule(report: dict[str, Any], first: int, lines: Sequence[str]) -> Judged:
    n = len(lines)
    blank = [not line.strip() for line in lines]

    def out(values: dict[int, int], passed: bool, why: str) -> Judged:
        return Judged(passed, [None if blank[i] else values.get(i) for i in range(n)], why)

    if "syntax" in report:
        filled = [i for i in range(n) if not blank[i]] or [0]
        at = report["syntax"] - first
        return out({min(max(at, filled[0]), filled[-1]): -1}, False, "syntax")
    load = report["load"]
    ran = {line - first for line in load["lines"]}
    if not load["ok"]:
        values = dict.fromkeys(ran, 1)
        if load["err"] is not None:
            values[load["err"] - first] = -1
        return out(values, False, "load")
    tests = report["tests"]
    if all(t["ok"] for t in tests):
        return out(dict.fromkeys(range(n), 1), True, "passed")
    headers = {i for i in ran if lines[i].lstrip().startswith(("def ", "class ", "async def "))}
    for t in tests:
        ran |= {line - first for line in t["lines"]}
    blamed = _blamed(tests, first)
    if not blamed:  # rule 5: the failing calls never reached the completion's code
        return out(dict.fromkeys(headers, -1), False, "tests")
    values = dict.fromkeys(ran, 1)
    for i in blamed:
        values[i] = -1
    return out(values, False, "tests")


def _blamed(tests: Sequence[dict[str, Any]], first: int) -> set[int]:
    """Lines that raised, and the lines of the largest Ochiai score (module docstring)."""
    failing = [t for t in tests if not t["ok"]]
    blamed = {t["err"] - first for t in failing if t["err"] is not None}
    f: dict[int, int] = {}
    p: dict[int, int] = {}
    for t in tests:
        counts = p if t["ok"] else f
        for line in t["lines"]:
            counts[line - first] = counts.get(line - first, 0) + 1
    scores = {i: f[i] / math.sqrt(len(failing) * (f[i] + p.get(i, 0))) for i in f}
    if scores:
        top = max(scores.values())
        blamed |= {i for i, s in scores.items() if math.isclose(s, top)}
    return blamed
