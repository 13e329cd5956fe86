"""The debounce: the newest request per document wins, the delay adapts to accepts and
dismissals within its bounds."""

from __future__ import annotations

import asyncio

from crlhf_lsp.debounce import (
    ACCEPT_FACTOR,
    MAX_MS,
    MIN_MS,
    START_MS,
    AdaptiveDelay,
    Debouncer,
    FixedDelay,
    delay_from_environment,
)


async def test_a_burst_lets_only_the_last_request_through() -> None:
    debounce = Debouncer(AdaptiveDelay(MIN_MS))
    tickets = [debounce.arrived("a") for _ in range(5)]
    other = debounce.arrived("b")  # another document is not superseded
    settled = await asyncio.gather(*(debounce.settle("a", t) for t in tickets))
    assert settled == [False, False, False, False, True]
    assert await debounce.settle("b", other)


async def test_a_request_arriving_during_the_wait_supersedes_it() -> None:
    debounce = Debouncer(AdaptiveDelay(MIN_MS))
    first = debounce.arrived("a")
    waiting = asyncio.ensure_future(debounce.settle("a", first))
    await asyncio.sleep(0)
    debounce.arrived("a")
    assert await waiting is False


def test_accepts_shorten_and_dismissals_lengthen_the_delay_within_bounds() -> None:
    debounce = Debouncer()
    assert debounce.delay.ms == START_MS
    debounce.suggested("a", "c1")
    debounce.accepted("c1")
    assert debounce.delay.ms == START_MS * ACCEPT_FACTOR
    debounce.accepted("c1")  # a second accept of the same suggestion counts once
    assert debounce.delay.ms == START_MS * ACCEPT_FACTOR
    for i in range(50):  # each new suggestion passes over the one before it
        debounce.suggested("a", f"d{i}")
    assert debounce.delay.ms == MAX_MS
    for i in range(50):
        debounce.suggested("b", f"e{i}")
        debounce.accepted(f"e{i}")
    assert debounce.delay.ms == MIN_MS


def test_a_suggestion_typed_into_is_not_a_dismissal() -> None:
    debounce = Debouncer()
    debounce.suggested("a", "c1")
    debounce.kept("a")
    debounce.suggested("a", "c2")
    assert debounce.delay.ms == START_MS


async def test_a_fixed_delay_from_the_environment_does_not_adapt(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CRLHF_DEBOUNCE_MS", "0")
    debounce = Debouncer()
    assert isinstance(debounce.delay, FixedDelay) and debounce.delay.ms == 0
    debounce.suggested("a", "c1")
    debounce.suggested("a", "c2")
    assert debounce.delay.ms == 0
    first, second = debounce.arrived("a"), debounce.arrived("a")
    assert not await debounce.settle("a", first)
    assert await debounce.settle("a", second)
    monkeypatch.delenv("CRLHF_DEBOUNCE_MS")
    assert type(delay_from_environment()) is AdaptiveDelay
