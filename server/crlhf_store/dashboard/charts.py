"""Server-side SVG charts: bars, lines, a scatter, box plots, a timeline.

Hand-written rather than a charting library because the dashboard needs five simple
kinds, must work with no internet and no JavaScript (its pages forbid scripts through
their Content-Security-Policy), and every label here is user input (annotator names,
languages, versions): building the SVG with :func:`markupsafe.escape` on each string keeps
escaping in one visible place. Colours and fonts come from ``static/dashboard.css``
(classes only, no ``style`` attributes, which the CSP would block).

Every chart is an ``<svg class="chart" data-chart="NAME">`` with a ``<title>`` per mark, so
a hover shows the value and the browser test can check that marks were drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

__all__ = ["Box", "Point", "Series", "bars", "boxes", "lines", "scatter", "timeline"]

W, H = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 36


@dataclass
class Series:
    name: str
    values: Sequence[float]
    css: str = "s1"


@dataclass
class Point:
    x: float
    y: float
    label: str
    css: str = "ok"


@dataclass
class Box:
    label: str
    p10: float
    p25: float
    median: float
    p75: float
    p90: float
    mean: float | None
    n: int


def _f(v: float) -> str:
    return f"{v:.1f}"


def _svg(name: str, title: str, body: list[str], width: int = W, height: int = H) -> Markup:
    head = (
        f'<svg class="chart" data-chart="{escape(name)}" role="img" '
        f'aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
    )
    return Markup(head + f"<title>{escape(title)}</title>" + "".join(body) + "</svg>")


def _nice_max(v: float) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above ``v``: round tick values."""
    if v <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(v))
    return next(m * scale for m in (1, 2, 5, 10) if m * scale >= v)


def _axes(ymax: float, labels: Sequence[str], plot_w: float, *, pct: bool = False) -> list[str]:
    out = [f'<line class="axis" x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}"/>']
    plot_h = H - TOP - BOTTOM
    for i in range(5):
        v = ymax * i / 4
        y = H - BOTTOM - plot_h * i / 4
        text = f"{v:.0%}" if pct else (f"{v:g}" if v < 1000 else f"{v / 1000:g}k")
        out.append(f'<line class="grid" x1="{LEFT}" y1="{_f(y)}" x2="{W - RIGHT}" y2="{_f(y)}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 4}" y="{_f(y + 4)}" text-anchor="end">{text}</text>'
        )
    step = max(1, len(labels) // 8)
    slot = plot_w / max(1, len(labels))
    for i in range(0, len(labels), step):
        x = LEFT + slot * (i + 0.5)
        out.append(
            f'<text class="tick" x="{_f(x)}" y="{H - BOTTOM + 14}" '
            f'text-anchor="middle">{escape(_short(labels[i]))}</text>'
        )
    return out


def _short(label: str, n: int = 12) -> str:
    """A tick label that fits its slot; the mark's ``<title>`` has the whole of it."""
    return label if len(label) <= n else label[: n - 1] + "…"


def _legend(series: Sequence[Series]) -> list[str]:
    out, x = [], LEFT
    for s in series:
        out.append(f'<rect class="{escape(s.css)}" x="{x}" y="{H - 14}" width="10" height="10"/>')
        out.append(f'<text class="legend" x="{x + 14}" y="{H - 5}">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    return out


def bars(
    name: str, title: str, labels: Sequence[str], series: Sequence[Series], *, pct: bool = False
) -> Markup:
    """Grouped bars: one group per label, one bar per series (``pct``: shares on [0, 1])."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    ymax = 1.0 if pct else _nice_max(max((v for s in series for v in s.values), default=0))
    body = _axes(ymax, labels, plot_w, pct=pct)
    slot = plot_w / max(1, len(labels))
    bar_w = slot * 0.8 / max(1, len(series))
    for k, s in enumerate(series):
        for i, v in enumerate(s.values):
            h = plot_h * v / ymax
            x = LEFT + slot * i + slot * 0.1 + bar_w * k
            body.append(
                f'<rect class="{escape(s.css)}" x="{_f(x)}" y="{_f(H - BOTTOM - h)}" '
                f'width="{_f(bar_w)}" height="{_f(h)}"><title>{escape(labels[i])}: '
                f"{escape(s.name)} {v:g}</title></rect>"
            )
    if len(series) > 1:
        body += _legend(series)
    return _svg(name, title, body)


def lines(
    name: str, title: str, labels: Sequence[str], series: Sequence[Series], *, pct: bool = False
) -> Markup:
    """Line chart; each series a polyline with a dot per value."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    ymax = 1.0 if pct else _nice_max(max((v for s in series for v in s.values), default=0))
    body = _axes(ymax, labels, plot_w, pct=pct)
    slot = plot_w / max(1, len(labels))
    for s in series:
        pts = [
            (LEFT + slot * (i + 0.5), H - BOTTOM - plot_h * v / ymax)
            for i, v in enumerate(s.values)
        ]
        path = " ".join(f"{_f(x)},{_f(y)}" for x, y in pts)
        body.append(f'<polyline class="line {escape(s.css)}" points="{path}"/>')
        for (x, y), label, v in zip(pts, labels, s.values, strict=False):
            body.append(
                f'<circle class="{escape(s.css)}" cx="{_f(x)}" cy="{_f(y)}" r="2.5">'
                f"<title>{escape(label)}: {escape(s.name)} {v:g}</title></circle>"
            )
    if len(series) > 1:
        body += _legend(series)
    return _svg(name, title, body)


def scatter(name: str, title: str, points: Sequence[Point], x_label: str, y_label: str) -> Markup:
    """Points in the unit square, with the diagonal y = x for reference."""
    size, pad = 360, 44
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
        body.append(
            f'<text class="tick" x="{_f(sx(v))}" y="{size - pad + 14}" '
            f'text-anchor="middle">{v:g}</text>'
        )
        body.append(
            f'<text class="tick" x="{pad - 4}" y="{_f(sy(v) + 4)}" text-anchor="end">{v:g}</text>'
        )
    body.append(
        f'<text class="axis-label" x="{size / 2}" y="{size - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    body.append(
        f'<text class="axis-label" x="12" y="{size / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {size / 2})">{escape(y_label)}</text>'
    )
    for p in points:
        body.append(
            f'<circle class="dot {escape(p.css)}" cx="{_f(sx(p.x))}" cy="{_f(sy(p.y))}" r="5">'
            f"<title>{escape(p.label)}: {p.x:.2f}, {p.y:.2f}</title></circle>"
        )
    return _svg(name, title, body, size, size)


def boxes(name: str, title: str, items: Sequence[Box]) -> Markup:
    """Box plots on [0, 1]: whiskers p10–p90, box p25–p75, median line, mean dot."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    body = _axes(1.0, [b.label for b in items], plot_w)
    slot = plot_w / max(1, len(items))

    def y(v: float) -> str:
        return _f(H - BOTTOM - plot_h * v)

    for i, b in enumerate(items):
        cx, half = LEFT + slot * (i + 0.5), min(18.0, slot * 0.3)
        tip = (
            f"<title>{escape(b.label)}: n={b.n}, median {b.median:.2f}, "
            f"p25–p75 {b.p25:.2f}–{b.p75:.2f}</title>"
        )
        body += [
            f'<line class="whisker" x1="{_f(cx)}" y1="{y(b.p10)}" x2="{_f(cx)}" y2="{y(b.p90)}"/>',
            f'<rect class="box" x="{_f(cx - half)}" y="{y(b.p75)}" width="{_f(2 * half)}" '
            f'height="{_f(plot_h * (b.p75 - b.p25))}">{tip}</rect>',
            f'<line class="median" x1="{_f(cx - half)}" y1="{y(b.median)}" '
            f'x2="{_f(cx + half)}" y2="{y(b.median)}"/>',
        ]
        if b.mean is not None:
            body.append(f'<circle class="mean" cx="{_f(cx)}" cy="{y(b.mean)}" r="3"/>')
    return _svg(name, title, body)


def timeline(
    name: str, title: str, items: Sequence[tuple[str, datetime, str, str | None]]
) -> Markup:
    """Adapter versions in upload order (``(version, created, status, parent)``, oldest
    first): a dot per version coloured by status, its upload date under it, and an arc from
    its parent. Ordinal rather than to scale: nightly versions would crowd a time axis."""
    step = 96
    width = max(W, 40 + step * len(items))
    height = 150
    x_of = {v: 48 + step * i for i, (v, _, _, _) in enumerate(items)}
    y = 70
    body = [f'<line class="axis" x1="24" y1="{y}" x2="{width - 24}" y2="{y}"/>'] if items else []
    for version, _, _, parent in items:
        if parent in x_of:
            x0, x1 = x_of[parent], x_of[version]
            body.append(
                f'<path class="link" fill="none" d="M {x0} {y - 8} '
                f'Q {(x0 + x1) / 2} {y - 56} {x1} {y - 8}"/>'
            )
    for version, created, status, _ in items:
        x = x_of[version]
        body += [
            f'<circle class="dot {escape(status)}" cx="{x}" cy="{y}" r="8"><title>'
            f"{escape(version)}: {escape(status)}, {created:%Y-%m-%d %H:%M}</title></circle>",
            f'<text class="legend" x="{x}" y="{y + 26}" text-anchor="middle">'
            f"{escape(version[:14])}</text>",
            f'<text class="tick" x="{x}" y="{y + 40}" text-anchor="middle">'
            f"{created:%m-%d %H:%M}</text>",
        ]
    return _svg(name, title, body, width, height)
