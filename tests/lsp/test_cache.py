"""The suggestion cache: a position seen before, typing through a kept suggestion, the key's
window and context, the LRU bound."""

from __future__ import annotations

import uuid

from crlhf_contract.schemas import CompletionIn
from crlhf_lsp.cache import PREFIX_CHARS, SuggestionCache
from crlhf_lsp.completion import CompletionRecord, Cursor

CONTEXT = ("tiny", None, 48, 0.0)


def cursor(before: str, after: str = "\n", uri: str = "file:///a.py") -> Cursor:
    line_prefix = before.rsplit("\n", 1)[-1]
    line_suffix = after.split("\n", 1)[0]
    line = before.count("\n")
    return Cursor(uri, line, len(line_prefix), line_prefix, line_suffix, before, after, "python")


def record(at: Cursor, text: str) -> CompletionRecord:
    row = CompletionIn(id=uuid.uuid4(), prompt=at.prefix, language="python", text=text, model="m")
    return CompletionRecord.at(at, text, row)


def test_a_position_seen_before_is_answered_with_the_same_completion() -> None:
    cache = SuggestionCache()
    here = cursor("def mean(values):\n    ")
    made = record(here, "return sum(values)")
    cache.put(here, CONTEXT, made)
    hit = cache.get(cursor("def mean(values):\n    "), CONTEXT)
    assert hit is not None
    assert hit[1] == "return sum(values)"
    assert hit[0].id == made.id
    assert cache.get(cursor("def mean(values):\n    r", ""), CONTEXT) is None  # other suffix


def test_another_adapter_or_setting_misses() -> None:
    cache = SuggestionCache()
    here = cursor("x = ")
    cache.put(here, CONTEXT, record(here, "1"))
    assert cache.get(here, ("tiny", "v2", 48, 0.0)) is None
    assert cache.get(here, ("tiny", None, 16, 0.0)) is None
    assert cache.get(here, CONTEXT) is not None


def test_typing_the_start_of_a_kept_suggestion_answers_its_rest() -> None:
    cache = SuggestionCache()
    here = cursor("def f(a):\n    ")
    made = record(here, "return a + 1")
    cache.put(here, CONTEXT, made)
    hit = cache.get(cursor("def f(a):\n    ret"), CONTEXT)
    assert hit is not None
    rec, rest = hit
    assert rest == "urn a + 1"
    assert rec.id == made.id
    # Relocated where the user started typing it, in today's document.
    assert (rec.line, rec.line_prefix) == (1, "    ")
    # Typed something else, or all of it: not answered from it.
    assert cache.get(cursor("def f(a):\n    rex"), CONTEXT) is None
    assert cache.get(cursor("def f(a):\n    return a + 1"), CONTEXT) is None


def test_typing_through_does_not_cross_the_line() -> None:
    cache = SuggestionCache()
    here = cursor("x = [")
    cache.put(here, CONTEXT, record(here, "1,\n2]"))
    assert cache.get(cursor("x = [1,\n"), CONTEXT) is None


def test_the_key_is_the_text_near_the_cursor() -> None:
    cache = SuggestionCache()
    near = "y" * PREFIX_CHARS
    cache.put(cursor("# old header\n" + near), CONTEXT, record(cursor(near), "z"))
    hit = cache.get(cursor("# a new header, far away\n" + near), CONTEXT)
    assert hit is not None and hit[1] == "z"
    assert cache.get(cursor("# old header\n" + near[:-1] + "x"), CONTEXT) is None


def test_the_least_recently_used_suggestion_goes_first() -> None:
    cache = SuggestionCache(capacity=2)
    a, b, c = cursor("a = "), cursor("b = "), cursor("c = ")
    for at in (a, b):
        cache.put(at, CONTEXT, record(at, "1"))
    assert cache.get(a, CONTEXT) is not None  # a used: b is now the oldest
    cache.put(c, CONTEXT, record(c, "1"))
    assert len(cache) == 2
    assert cache.get(b, CONTEXT) is None
    assert cache.get(a, CONTEXT) is not None and cache.get(c, CONTEXT) is not None
    cache.clear()
    assert cache.get(a, CONTEXT) is None
