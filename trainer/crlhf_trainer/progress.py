"""What ``crlhf-train`` shows while it works: a progress bar per stage, then a summary table
(both on stderr; rich is imported only when they are drawn)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["bars", "print_summary"]


@contextmanager
def bars() -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(),
        transient=False,
    ) as bars:
        tasks: dict[str, Any] = {}

        def advance(stage: str, n: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], advance=n, total=total)

        yield advance


def _console():
    from rich.console import Console

    return Console(stderr=True)


def print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="crlhf-train", show_header=True)
    table.add_column("stage")
    table.add_column("result")
    for stage, value in summary.items():
        if stage == "eval":
            for name, metrics in value.items():
                shown = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
                table.add_row(f"eval ({name})", shown)
        elif isinstance(value, dict):
            shown = ", ".join(
                f"{k} {_fmt(v)}"
                for k, v in value.items()
                if k not in ("config", "report", "skipped", "parent_dir", "history")
            )
            if stage == "train" and "report" in value:
                r = value["report"]
                shown += f", {r['tokens_per_s']:.0f} tok/s, peak {r['peak_memory_mb']:.0f} MB"
            table.add_row(stage, shown)
        else:
            table.add_row(stage, str(value))
    _console().print(table)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
