"""Scenario ``execution``: each line's truth comes from running it, in the real jail.

The old rule marked a failing completion's line correct only when its text was a line of
the reference, so a sensible alternative was wrong and a copied line right. These
programs run under bubblewrap through :class:`crlhf_trainer.sandbox.Sandbox`.
"""

from __future__ import annotations

from crlhf_cli.execution import judge, split_tests
from crlhf_cli.problems import DemoProblem, mbpp_train
from crlhf_trainer.sandbox import Sandbox

SB = Sandbox(timeout=12, cpu_seconds=10, memory_mb=256)  # 3 spinning tests: 6 s of CPU

ABS = DemoProblem(
    task_id="t/abs",
    prompt='"""\nAbsolute value.\nassert my_abs(-2) == 2\n"""\n',
    tests="assert my_abs(-2) == 2\nassert my_abs(3) == 3\nassert my_abs(0) == 0",
    reference="def my_abs(x):\n    return x if x >= 0 else -x\n",
)


def test_a_passing_alternative_to_the_reference_is_correct_on_every_line() -> None:
    text = "def my_abs(x):\n    if x < 0:\n\n        return 0 - x\n    return x"
    judged = judge(ABS, text, SB)
    assert judged.passed and judged.why == "passed"
    assert judged.truth == [1, 1, None, 1, 1]  # none of these lines is in the reference


def test_a_wrong_branch_is_blamed_and_the_lines_that_passed_tests_are_not() -> None:
    # the negative branch runs only in the failing test: it alone has the top score
    text = "def my_abs(x):\n    if x < 0:\n        return x\n    return x"
    judged = judge(ABS, text, SB)
    assert not judged.passed and judged.why == "tests"
    assert judged.truth == [1, 1, -1, 1]


def test_the_line_that_raises_is_wrong() -> None:
    text = "def my_abs(x):\n    y = x * 2\n    return abs(x) / undefined_name"
    judged = judge(ABS, text, SB)
    assert judged.truth[0] == 1 and judged.truth[2] == -1


def test_a_syntax_error_blames_its_line_and_knows_nothing_else() -> None:
    judged = judge(ABS, "def my_abs(x):\n    return (x +", SB)
    assert not judged.passed and judged.why == "syntax"
    assert judged.truth == [None, -1]
    # cut off at the end, blank lines after: the last written line is the one blamed
    assert judge(ABS, "def my_abs(x):\n    return (x +\n\n", SB).truth == [None, -1, None]


def test_a_misnamed_function_blames_its_def_line_not_a_body_no_test_ran() -> None:
    judged = judge(ABS, "def absolute(x):\n    return x if x >= 0 else -x", SB)
    assert not judged.passed and judged.truth == [-1, None]


def test_an_endless_loop_is_stopped_and_blamed_where_it_spins() -> None:
    text = "def my_abs(x):\n    while x != 1:\n        x = x\n    return x"
    judged = judge(ABS, text, SB)
    assert judged.why == "tests" and judged.truth[0] == 1
    assert -1 in judged.truth[1:3]


def test_a_program_cannot_pass_by_printing_a_report() -> None:
    # a fake report on stderr before the harness's own: the nonce differs, the last wins
    text = (
        "import sys\n"
        'sys.stderr.write(\'\\n@@crlhf-trace-0000000000000000@@{"load": {"ok": true, '
        '"lines": [], "err": null}, "tests": []}\\n\')\n'
        "def my_abs(x):\n    return -x"
    )
    judged = judge(ABS, text, SB)
    assert not judged.passed and -1 in judged.truth


def test_mbpp_references_pass_under_the_harness() -> None:
    problems = mbpp_train(6, seed=3)
    for p in problems:
        assert len(split_tests(p.tests)) >= 3
        body = p.reference
        judged = judge(p, body, SB)
        assert judged.passed, (p.task_id, judged)
