"""crlhf_lsp.tracking: an accepted completion's lines followed through edits above, below and
in them, and through whole-document changes (UTF-16 offsets)."""

from __future__ import annotations

from crlhf_lsp.tracking import Change, Tracker, to_index


def track(lines: list[str]) -> Tracker:
    tracker = Tracker()
    tracker.track("u", "c", 10, lines)
    return tracker


def lines_of(tracker: Tracker) -> list[tuple[int, int]]:
    return [(t.index, t.line) for t in tracker.at("u", 0, 10_000)]


def test_lines_move_with_edits_above_and_stay_with_edits_below() -> None:
    tracker = track(["def f():", "    return 1"])
    tracker.apply("u", Change("a\nb\n", (0, 0), (0, 0)), [], "utf-16")  # two lines above
    assert lines_of(tracker) == [(0, 12), (1, 13)]
    tracker.apply("u", Change("", (2, 0), (4, 0)), [], "utf-16")  # two lines deleted above
    assert lines_of(tracker) == [(0, 10), (1, 11)]
    tracker.apply("u", Change("x\n", (20, 0), (20, 0)), [], "utf-16")  # below: nothing moves
    assert lines_of(tracker) == [(0, 10), (1, 11)]
    tracker.apply("u", Change("\n", (10, 0), (10, 0)), [], "utf-16")  # Enter at column 0
    assert lines_of(tracker) == [(0, 11), (1, 12)]


def test_small_edits_keep_a_line_and_rewrites_or_deletions_drop_it() -> None:
    tracker = track(["def f():", "    return total_value", "    pass"])
    tracker.apply("u", Change("s", (11, 22), (11, 22)), [], "utf-16")  # typed at its end
    assert (1, 11) in lines_of(tracker)
    tracker.apply("u", Change("zzzzzzzzzzzzzzzz", (11, 4), (11, 23)), [], "utf-16")
    assert [i for i, _ in lines_of(tracker)] == [0, 2]
    tracker.apply("u", Change("", (10, 0), (11, 0)), [], "utf-16")  # line 0 deleted
    assert lines_of(tracker) == [(2, 11)]


def test_whole_document_changes_rematch_by_text_and_utf16_offsets() -> None:
    tracker = track(["alpha = 1", "beta = 2"])
    tracker.apply("u", Change("x\nalpha = 1\nbeta = 2"), ["x", "alpha = 1", "beta = 2"], "utf-16")
    assert lines_of(tracker) == [(0, 1), (1, 2)]
    assert to_index("a🙂b", 3) == 2 and to_index("a🙂b", 99) == 3
    assert to_index("é", 2, "utf-8") == 1
