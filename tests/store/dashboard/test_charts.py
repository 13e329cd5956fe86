"""crlhf_store.dashboard.charts: every string escaped, empty inputs drawn without error."""

from __future__ import annotations

from datetime import UTC, datetime

from crlhf_store.dashboard import charts

EVIL = '<script>alert("x")</script>'


def test_labels_are_escaped_in_every_chart() -> None:
    now = datetime.now(UTC)
    drawn = [
        charts.bars("b", EVIL, [EVIL], [charts.Series(EVIL, [1], EVIL)]),
        charts.lines(
            "l", EVIL, [EVIL, "b"], [charts.Series(EVIL, [1, 2]), charts.Series("x", [0, 1])]
        ),
        charts.scatter("s", EVIL, [charts.Point(0.5, 0.5, EVIL, EVIL)], EVIL, EVIL),
        charts.boxes("x", EVIL, [charts.Box(EVIL, 0.1, 0.2, 0.3, 0.4, 0.5, 0.3, 3)]),
        charts.timeline("t", EVIL, [(EVIL, now, EVIL, None), ("v2", now, "candidate", EVIL)]),
    ]
    for svg in drawn:
        assert "<script" not in svg and "&lt;script&gt;" in svg
        assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")


def test_empty_and_zero_data_draw() -> None:
    assert 'data-chart="e"' in charts.bars("e", "t", [], [charts.Series("a", [])])
    assert "<rect" in charts.bars("z", "t", ["a"], [charts.Series("a", [0])])
    assert "<circle" not in charts.scatter("s", "t", [], "x", "y")
    assert charts.boxes("b", "t", []).startswith("<svg")
    assert charts.timeline("t", "t", []).startswith("<svg")


def test_axis_maximum_is_round() -> None:
    assert [charts._nice_max(v) for v in (0, 0.3, 1, 7, 12, 577, 1001)] == [
        1.0,
        0.5,
        1.0,
        10.0,
        20.0,
        1000.0,
        2000.0,
    ]


def test_bars_of_shares_use_a_percent_axis_up_to_one() -> None:
    svg = str(
        charts.bars("s", "shares", ["v1", "v2"], [charts.Series("kept", [0.4, 0.8])], pct=True)
    )
    assert ">100%</text>" in svg and ">50%</text>" in svg
    assert "<title>v2: kept 0.8</title>" in svg
