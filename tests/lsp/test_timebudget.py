"""The generation time budget: past it, a suggestion ends at its next line end and keeps
only complete lines (a fake clock in the unit tests; end to end, tokens slowed far past a
small budget, and only what was cut is checked, never how long it took)."""

from __future__ import annotations

from pathlib import Path

import pytest
from crlhf_lsp.timebudget import (
    GENERATION_BUDGET_S,
    PREFILL_TOKENS,
    LineDeadline,
    budget_seconds,
    prefill_tokens,
)
from lsp_harness import inline, lsp_session, open_doc, settings_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def never(text: str) -> bool:
    return False


def test_within_the_budget_only_the_cutter_stops() -> None:
    clock = Clock()
    deadline = LineDeadline(0.5, lambda text: text.endswith("END"), clock)
    assert not deadline("a\nb\nc\n")
    assert deadline("a END")
    assert not deadline.hit


def test_past_the_budget_the_next_line_end_stops_and_the_unfinished_line_goes() -> None:
    clock = Clock()
    deadline = LineDeadline(0.5, never, clock)
    clock.now = 0.6
    assert not deadline(" x = ")  # no line yet: it goes on
    assert not deadline("\n")  # a blank line is not a line of code
    assert deadline(" x = 1\n    y")
    assert deadline.hit
    assert deadline.complete_lines(" x = 1\n    y") == " x = 1"
    assert deadline.complete_lines("\n\n    y") == ""


def test_no_budget() -> None:
    clock = Clock()
    deadline = LineDeadline(0, never, clock)
    clock.now = 1e9
    assert not deadline("a\nb\n")


def test_the_budget_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CRLHF_GENERATION_BUDGET_S", raising=False)
    assert budget_seconds() == GENERATION_BUDGET_S
    monkeypatch.setenv("CRLHF_GENERATION_BUDGET_S", "0")
    assert budget_seconds() == 0
    monkeypatch.setenv("CRLHF_GENERATION_BUDGET_S", "soon")
    assert budget_seconds() == GENERATION_BUDGET_S
    monkeypatch.delenv("CRLHF_PREFILL_TOKENS", raising=False)
    assert prefill_tokens() == PREFILL_TOKENS
    monkeypatch.setenv("CRLHF_PREFILL_TOKENS", "0")
    assert prefill_tokens() == 0


@pytest.mark.slow
async def test_a_slow_model_call_shows_its_first_lines(tmp_path: Path, tiny_model: Path) -> None:
    """Tokens slowed to 50 ms each: with a 0.2 s budget the block is cut after a line."""
    uri, source = "file:///work/budget.py", "def "
    slow = {"CRLHF_TOKEN_DELAY_S": "0.05"}
    texts = []
    for budget in ("0", "0.2"):
        env = slow | {"CRLHF_GENERATION_BUDGET_S": budget}
        async with lsp_session(settings_for(tmp_path, tiny_model), env=env) as client:
            open_doc(client, uri, source)
            [item] = await inline(client, uri, 0, 4)
            texts.append(item.insert_text)
    whole, first = texts
    assert whole.count("\n") >= 2, whole  # a block: the budget has lines to cut
    assert whole.startswith(first) and len(first) < len(whole)
    assert whole[len(first)] == "\n"  # cut where a line ends
