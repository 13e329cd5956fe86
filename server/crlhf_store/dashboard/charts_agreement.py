"""Server-side SVG charts of agreement: a heat map of pairwise agreement and a reliability
diagram (calibration), in the manner of :mod:`~crlhf_store.dashboard.charts` (classes for
colours, :func:`markupsafe.escape` on every label, a ``<title>`` per mark).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from crlhf_store.dashboard.charts import _f, _short, _svg

__all__ = ["heatmap", "pair_heatmap", "reliability_diagram"]

LEVELS = 5


def _level(v: float) -> int:
    """The colour class of an agreement share: h0 (below 20%) to h4 (80% and above)."""
    return min(LEVELS - 1, max(0, int(v * LEVELS)))


def heatmap(
    name: str,
    title: str,
    labels: Sequence[str],
    cells: dict[tuple[int, int], tuple[float | None, int]],
) -> Markup:
    """A symmetric grid, one row and column per label; ``cells[(i, j)]`` is (agreement,
    co-rated count) for i < j. A pair with nothing co-rated is drawn hollow (class
    ``none``); the diagonal is left empty."""
    n = len(labels)
    cell = max(14, min(36, 420 // max(1, n)))
    left, top = 110, 16
    size = left + cell * n + 16
    height = top + cell * n + 96
    body = []
    for i in range(n):
        y = top + cell * i
        body.append(
            f'<text class="tick" x="{left - 4}" y="{_f(y + cell / 2 + 4)}" '
            f'text-anchor="end">{escape(_short(labels[i], 16))}</text>'
        )
        x = left + cell * i + cell / 2
        yl = top + cell * n + 8
        body.append(
            f'<text class="tick" x="{_f(x)}" y="{yl}" text-anchor="end" '
            f'transform="rotate(-60 {_f(x)} {yl})">{escape(_short(labels[i], 16))}</text>'
        )
        for j in range(n):
            if i == j:
                continue
            share, count = cells.get((min(i, j), max(i, j)), (None, 0))
            css = "none" if share is None else f"h{_level(share)}"
            text = "nothing co-rated" if share is None else f"{share:.0%} of {count} lines"
            body.append(
                f'<rect class="cell {css}" x="{left + cell * j}" y="{y}" width="{cell - 1}" '
                f'height="{cell - 1}"><title>{escape(labels[i])} · {escape(labels[j])}: '
                f"{text}</title></rect>"
            )
    return _svg(name, title, body, size, height)


def pair_heatmap(pairs: Sequence[tuple[str, str, float | None, int]]) -> Markup:
    """The heat map of ``(a, b, agreement, co-rated)`` for every pair of annotators."""
    names = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
    index = {n: i for i, n in enumerate(names)}
    cells = {
        (min(index[a], index[b]), max(index[a], index[b])): (share, n) for a, b, share, n in pairs
    }
    return heatmap("pairwise-agreement", "Pairwise agreement between annotators", names, cells)


def reliability_diagram(
    name: str,
    title: str,
    bins: Sequence[tuple[float, float, int, float | None, float | None]],
) -> Markup:
    """Observed share correct against predicted P(correct), per bin ``(low, high, n,
    predicted, observed)``: a bar per bin at its observed share with its count above it,
    a dot at (predicted, observed), and the diagonal of perfect calibration."""
    size, pad = 380, 44
    span = size - 2 * pad

    def sx(v: float) -> float:
        return pad + span * v

    def sy(v: float) -> float:
        return size - pad - span * v

    body = [
        f'<rect class="frame" x="{pad}" y="{pad}" width="{span}" height="{span}"/>',
        f'<line class="diagonal" x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}"/>',
    ]
    for v in (0, 0.5, 1):
        body += [
            f'<text class="tick" x="{_f(sx(v))}" y="{size - pad + 14}" '
            f'text-anchor="middle">{v:g}</text>',
            f'<text class="tick" x="{pad - 4}" y="{_f(sy(v) + 4)}" text-anchor="end">{v:g}</text>',
        ]
    body += [
        f'<text class="axis-label" x="{size / 2}" y="{size - 8}" text-anchor="middle">'
        "aggregated P(correct)</text>",
        f'<text class="axis-label" x="12" y="{size / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {size / 2})">observed share correct</text>',
    ]
    for low, high, n, predicted, observed in bins:
        if not n or observed is None or predicted is None:
            continue
        x, w = sx(low) + 1, span * (high - low) - 2
        body += [
            f'<rect class="s1 bin" x="{_f(x)}" y="{_f(sy(observed))}" width="{_f(w)}" '
            f'height="{_f(span * observed)}"><title>{low:.1f}–{high:.1f}: {n} lines, '
            f"{observed:.0%} correct, mean P {predicted:.2f}</title></rect>",
            f'<circle class="mean" cx="{_f(sx(predicted))}" cy="{_f(sy(observed))}" r="3"/>',
            f'<text class="tick" x="{_f(x + w / 2)}" y="{_f(sy(observed) - 4)}" '
            f'text-anchor="middle">{n}</text>',
        ]
    return _svg(name, title, body, size, size)
