"""The demo's HTML report: the summary and its plots, inline SVG (one self-contained file).

Plots: estimated vs simulated reliability per annotator, the reward distribution, the
training curve, pass@k before and after, and (scenario ``conventions``) the held-out
metric's change per credit source with its interval. matplotlib (the ``demo`` extra)
renders them with its non-interactive Agg/SVG backend, so no display is needed.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

KIND_COLOURS = {
    "reliable": "#2a9d8f",
    "mediocre": "#e9c46a",
    "spammer": "#8d99ae",
    "always_up": "#f4a261",
    "adversary": "#e63946",
}


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg") :]  # drop the XML prolog: the SVG sits inside HTML


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.2, 3.6))


def reliability_plot(annotators: list[dict[str, Any]]) -> str:
    fig, ax = _figure()
    for kind, colour in KIND_COLOURS.items():
        rows = [a for a in annotators if a["kind"] == kind and a.get("simulated") is not None]
        if not rows:
            continue
        x = [a["simulated"] for a in rows]
        y = [a["estimated"] for a in rows]
        err = [
            [max(0.0, a["estimated"] - a["low"]) for a in rows],
            [max(0.0, a["high"] - a["estimated"]) for a in rows],
        ]
        ax.errorbar(x, y, yerr=err, fmt="o", color=colour, label=kind, capsize=2, alpha=0.85)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="simulated reliability (share of labels right)",
        ylabel="estimated reliability (em2, 90% interval)",
    )
    ax.set_title("Annotators: estimated vs simulated")
    ax.legend(fontsize=7, loc="upper left")
    return _svg(fig)


def reward_plot(rewards: list[dict[str, Any]]) -> str:
    fig, ax = _figure()
    bins = [i / 10 for i in range(11)]
    passed = [r["reward"] for r in rewards if r.get("passed")]
    failed = [r["reward"] for r in rewards if not r.get("passed")]
    ax.hist(
        [failed, passed],
        bins=bins,
        stacked=True,
        color=["#e76f51", "#2a9d8f"],
        label=["fails its tests", "passes its tests"],
    )
    ax.set(xlabel="reward (expected share of correct lines)", ylabel="completions", xlim=(0, 1))
    ax.set_title(f"Rewards of {len(rewards)} completions")
    ax.legend(fontsize=7)
    return _svg(fig)


def training_plot(history: list[dict[str, float]]) -> str:
    fig, ax = _figure()
    steps = list(range(1, len(history) + 1))
    keys = [
        k for k in ("loss", "kl", "advantage", "reward", "ratio") if any(k in h for h in history)
    ]
    if not keys and history:
        keys = sorted({k for h in history for k in h} - {"lr", "grad_norm", "baseline"})[:3]
    for key in keys:
        ax.plot(steps, [h.get(key, float("nan")) for h in history], marker=".", label=key)
    if not history:
        ax.text(0.5, 0.5, "no training history recorded", ha="center", transform=ax.transAxes)
    ax.set(xlabel="optimizer step", ylabel="value")
    ax.set_title("Training curve (LoRA policy update)")
    if keys:
        ax.legend(fontsize=7)
    return _svg(fig)


def pass_plot(before: dict[str, float], after: dict[str, float]) -> str:
    fig, ax = _figure()
    names = sorted(k for k in before.keys() | after.keys() if "pass@" in k)
    x = range(len(names))
    for offset, values, label, colour in (
        (-0.2, before, "before", "#8d99ae"),
        (0.2, after, "after", "#2a9d8f"),
    ):
        heights = [values.get(n, 0) for n in names]
        bars = ax.bar([i + offset for i in x], heights, 0.4, label=label, color=colour)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(list(x), names, fontsize=8)
    top = max([0.1, *(before.get(n, 0) for n in names), *(after.get(n, 0) for n in names)])
    ax.set(ylabel="pass rate", ylim=(0, min(1.0, top * 1.2)))
    ax.set_title("pass@k on held-out problems")
    ax.legend(fontsize=7)
    return _svg(fig)


def arms_plot(arms: dict[str, dict[str, float]]) -> str:
    """The held-out metric's change per credit source, with 90% paired intervals."""
    fig, ax = _figure()
    names = list(arms)
    labels = {"em2": "em2 (published?)", "mv": "majority vote", "random": "random credit"}
    mid = [arms[n]["delta"] for n in names]
    err = [
        [m - arms[n]["delta_low"] for n, m in zip(names, mid, strict=True)],
        [arms[n]["delta_high"] - m for n, m in zip(names, mid, strict=True)],
    ]
    ax.errorbar(range(len(names)), mid, yerr=err, fmt="o", capsize=5, color="#2a9d8f")
    ax.axhline(0, color="#999", linewidth=1)
    ax.set_xticks(range(len(names)), [labels.get(n, n) for n in names], fontsize=8)
    ax.set(ylabel="Δ held-out conventions (nats/token)")
    ax.set_title("Held-out change by credit source, same labels (90% CI)")
    return _svg(fig)


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }
th { font-weight: 600; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.plots > div svg { width: 100%; height: auto; }
pre { background: #f6f8fa; padding: .6em; white-space: pre-wrap; font-size: .85em; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.pair > div { min-width: 0; }
"""


def write_report(
    path: Path, summary: dict[str, Any], details: dict[str, Any], rows: list[tuple[str, str]]
) -> Path:
    """Write the report; ``rows`` is the summary table as (label, value) pairs."""
    before = summary["eval"]["before"]
    after = summary["eval"]["after"]
    plots = [
        reliability_plot(details.get("annotators", [])),
        reward_plot(details.get("rewards", [])),
        training_plot(details.get("history", [])),
        pass_plot(before, after),
    ]
    if details.get("arms"):
        plots.append(arms_plot(details["arms"]))
    example = details.get("example") or {}
    prompt = html.escape(example.get("prompt", ""))
    pair = "".join(
        f"<div><h3>{label}</h3><pre>{prompt}<b>{html.escape(example.get(key) or '(none)')}"
        "</b></pre></div>"
        for label, key in (("before (base model)", "before"), ("after (new adapter)", "after"))
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crlhf demo report</title>
<style>{CSS}</style></head><body>
<h1>crlhf demo: one night of crowd-sourced RLHF</h1>
<p>Completions from <code>{html.escape(str(summary.get("model", "")))}</code> through crlhf-lsp,
rated line by line by a simulated crowd through the store, aggregated, trained into a LoRA
adapter, evaluated, published and hot-swapped into the running language server.</p>
<h2>Summary</h2>
{_table(rows)}
<h2>Plots</h2>
<div class="plots">{"".join(f"<div>{p}</div>" for p in plots)}</div>
<h2>One completion, before and after the hot swap</h2>
<div class="pair">{pair}</div>
<h2>The summary as JSON</h2>
<pre>{html.escape(json.dumps(summary, indent=2, sort_keys=True))}</pre>
</body></html>
"""
    path.write_text(body, encoding="utf-8")
    return path
