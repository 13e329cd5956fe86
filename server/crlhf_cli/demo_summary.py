"""The demo's summary: the figures of a run in one dict, as table rows, and how each reads."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crlhf_cli.crowd import SimAnnotator
    from crlhf_cli.demo import DemoConfig
    from crlhf_cli.steps import Rated

__all__ = ["build_summary", "mean", "num", "pct", "summary_rows", "with_overall"]


def build_summary(
    cfg: DemoConfig,
    model_id: str,
    work: Path,
    crowd_stats: Any,
    *,
    rated: list[Rated],
    crowd: list[SimAnnotator],
    aggregation: dict[str, Any],
    rewards: dict[str, Any],
    nightly: dict[str, Any],
    hot_swap: dict[str, Any],
    example: dict[str, Any],
) -> dict[str, Any]:
    """The run's figures in one dict: what ``--json`` writes and the report shows."""
    evals = nightly.get("eval", {})
    train = nightly.get("train", {})
    kinds = Counter(a.kind for a in crowd)
    return {
        "model": model_id,
        "device": cfg.device,
        "mode": cfg.mode,
        "scenario": cfg.scenario,
        "completions": {
            "n": len(rated),
            "passed": sum(r.passed for r in rated),
            "mean_seconds": mean([r.completion.seconds for r in rated]),
            "lines": sum(t is not None for r in rated for t in r.truth),
        },
        "crowd": {"annotators": len(crowd), "kinds": dict(kinds)} | asdict(crowd_stats),
        "aggregation": aggregation,
        "rewards": _rewards(rewards["rows"]),
        "train": {
            "method": train.get("method"),
            "examples": train.get("examples"),
            "steps": train.get("report", {}).get("steps"),
            "seconds": train.get("report", {}).get("seconds"),
            "final": train.get("report", {}).get("final"),
        },
        "eval": {
            "before": with_overall(evals.get("baseline", {})),
            "after": with_overall(evals.get("candidate", {})),
        },
        "adapter": _adapter(nightly.get("publish", {})),
        "hot_swap": hot_swap,
        "example": {k: example[k] for k in ("task_id", "before", "after")},
        "work_dir": str(work),
    }


def _rewards(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "mean": mean([r["reward"] for r in rows]),
        "n_completions": len(rows),
        "mean_passed": mean([r["reward"] for r in rows if r["passed"]]),
        "mean_failed": mean([r["reward"] for r in rows if not r["passed"]]),
    }


def _adapter(publish: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": publish.get("version"),
        "sha256": publish.get("sha256"),
        "published": publish.get("status") == "published",
        "status": publish.get("status"),
        "decision": publish.get("decision"),
        "reason": publish.get("decision"),
    }


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    agg, ev, ad, hs = s["aggregation"], s["eval"], s["adapter"], s["hot_swap"]
    c, cr, rw = s["completions"], s["crowd"], s["rewards"]
    passes = sorted(k for k in ev["before"].keys() | ev["after"].keys() if "pass@" in k)
    # a completion "passes" when it keeps every convention there, or when it passes its tests
    kept, good, bad = (
        ("keep every convention", "keeping them", "breaking one")
        if s.get("scenario") == "conventions"
        else ("pass their tests", "passing", "failing")
    )
    return [
        ("model", f"{s['model']} ({s['device']}, {s['mode']})"),
        (
            "completions (crlhf-lsp)",
            f"{c['n']} accepted, {c['passed']} {kept}, {num(c['mean_seconds'], 's')} each",
        ),
        (
            "crowd",
            f"{cr['annotators']} annotators, {cr['ratings']} line ratings on "
            f"{cr['tasks']} tasks ({cr['honeypot_tasks']} honeypots)",
        ),
        (
            "line accuracy",
            f"em2 {pct(agg['accuracy'])} · majority vote "
            f"{pct(agg['majority_vote_accuracy'])} ({agg['lines']} lines)",
        ),
        *_score_rows(agg.get("scores")),
        (
            "flagged annotators",
            f"{len(agg['flagged_annotators'])} "
            f"({agg['flagged_unreliable']} of {agg['unreliable_annotators']} "
            "unreliable ones)",
        ),
        ("reliability error", num(agg["reliability_mae"])),
        (
            "rewards",
            f"mean {num(rw['mean'])} over {rw['n_completions']} completions "
            f"({good} {num(rw['mean_passed'])}, {bad} {num(rw['mean_failed'])})",
        ),
        (
            "training",
            f"{s['train']['steps']} steps on {s['train']['examples']} completions "
            f"({num(s['train']['seconds'], 's')})"
            if s["train"]["steps"] is not None
            else "skipped: the crowd's credit is flat",
        ),
        *[(k, f"{num(ev['before'].get(k))} → {num(ev['after'].get(k))}") for k in passes],
        *_learning_rows(s.get("learning")),
        (
            "adapter",
            f"{ad['version']} {ad['status']} ({ad['decision']})"
            if ad["version"]
            else f"none trained ({ad['decision']})",
        ),
        ("hot swap", f"{'yes' if hs['swapped'] else 'no'}, {num(hs['ms'], ' ms')}"),
        ("wall time", num(s.get("wall_s"), " s")),
    ]


def _score_rows(scores: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Accuracy means little alone: a constant answer can score 97% on skewed lines."""
    rows = []
    for name, sc in (scores or {}).items():
        if sc:
            rows.append(
                (
                    f"  {name.replace('_', ' ')}",
                    f"constant answer {pct(sc['constant'])} · balanced {pct(sc['balanced'])}"
                    f" · AUC {num(sc['auc'])} · Brier {num(sc['brier'])}",
                )
            )
    return rows


def _learning_rows(learning: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not learning:
        return []

    def delta(d: dict[str, Any]) -> str:
        return f"Δ {d['delta']:+.3f} [{d['delta_low']:+.3f}, {d['delta_high']:+.3f}]"

    def moved(key: str) -> str:
        return f"{learning[key]['before']:.0%} → {learning[key]['after']:.0%}"

    return [
        (
            "held-out conventions (nats/token)",
            f"{learning['before']:+.3f} → {learning['after']:+.3f}, {delta(learning)} "
            f"on {learning['n']} functions never rated (90% paired interval)",
        ),
        (
            "same labels, other credit",
            f"majority vote {delta(learning['majority_vote'])} · "
            f"random credit {delta(learning['random'])}",
        ),
        (
            "guards (held-out prompts)",
            f"rule-breaking lines {moved('violation_rate')} · parses {moved('parse_rate')} · "
            f"repeated lines {moved('repetition')}",
        ),
    ]


def with_overall(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add ``pass@k`` over all benchmarks (weighted by their problem counts)."""
    out = dict(metrics)
    ks = {k.split("/", 1)[1] for k in metrics if "/pass@" in k}
    for k in sorted(ks):
        parts = [
            (metrics[f"{b}/{k}"], metrics.get(f"{b}/problems", 1))
            for b in ("humaneval", "mbpp")
            if f"{b}/{k}" in metrics
        ]
        total = sum(n for _, n in parts)
        out[k] = sum(v * n for v, n in parts) / total if total else 0.0
    return out


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def num(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return f"{v}{unit}"
