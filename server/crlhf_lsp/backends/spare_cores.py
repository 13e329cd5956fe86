"""How many cores the rest of the machine leaves free: llama.cpp reads a prompt on all of
them when nobody else wants them, on its default share when somebody does.

Why: llama.cpp's threads wait for each other at every layer, so a thread whose core another
process holds stalls them all. That is why crlhf-lsp leaves a core free by default
(:func:`~crlhf_lsp.backends.llamacpp_engine.default_threads`): on a busy 2-core machine
2 threads took 24-47 s at a new position, 1 thread 1.1-6 s. But on an idle machine the
spare core sits unused while the developer waits for the prompt to be read, which is most
of a new position's time. So before each prompt it waits for, crlhf-lsp looks at what the
other processes did since it last looked::

    others = (Δ busy jiffies of the machine / clock ticks per second − Δ our CPU seconds)
             / Δ wall seconds                                         (cores in use)
    spare  = cores − others

and reads the prompt on every core (at most :data:`MAX_THREADS`) when ``others`` stays under
:data:`OTHERS_MAX`, else on the default share. Generation (one token at a time) keeps the
default share either way. ``busy = user + nice + system + irq + softirq + steal`` of the
first line of ``/proc/stat``; where there is no ``/proc/stat`` the default share is kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["MAX_THREADS", "MIN_WINDOW_S", "OTHERS_MAX", "SpareCores", "busy_and_total"]

OTHERS_MAX = 0.3
"""Cores the other processes may use on average for the prompt to be read on every core:
an editor repainting ghost text or a language server idling is well below it, a build or a
test run is far above it."""
MIN_WINDOW_S = 0.2
"""Below this much time since the last look, the last answer stands (jiffies are 10 ms)."""
MAX_THREADS = 8


def busy_and_total(stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of all cores from ``/proc/stat``'s text.

    >>> busy_and_total("cpu  10 2 3 100 5 1 1 0 0 0\\ncpu0 1 1 1 1 1 1 1 1 1 1\\n")
    (17, 122)
    """
    fields = stat.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError("not /proc/stat: its first line should start with 'cpu '")
    values = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    values += [0] * (8 - len(values))
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class SpareCores:
    """``threads(default)``: the threads to read a prompt with now (see the module)."""

    def __init__(
        self,
        *,
        stat_path: Path | str = "/proc/stat",
        cores: int | None = None,
        our_cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        ticks_per_s: float | None = None,
    ) -> None:
        self.stat_path = Path(stat_path)
        self.cores = cores or os.cpu_count() or 1
        self.our_cpu, self.clock = our_cpu, clock
        self.ticks = ticks_per_s or float(os.sysconf("SC_CLK_TCK"))
        self.others = float(self.cores)  # until a first window says otherwise: busy
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, int] | None:
        try:
            busy, _ = busy_and_total(self.stat_path.read_text())
        except (OSError, ValueError):
            return None
        return self.clock(), self.our_cpu(), busy

    def others_busy(self) -> float:
        """Cores the other processes used on average since the last look (the last answer
        when that was under :data:`MIN_WINDOW_S` ago)."""
        last = self._last
        if last is None:
            return self.others
        now = self._sample()
        if now is None:
            return self.others
        wall = now[0] - last[0]
        if wall < MIN_WINDOW_S:
            return self.others
        machine = (now[2] - last[2]) / self.ticks
        ours = now[1] - last[1]
        self.others = max(0.0, (machine - ours) / wall)
        self._last = now
        return self.others

    def threads(self, default: int) -> int:
        """Every core (at most :data:`MAX_THREADS`) when the others leave them free, else
        ``default``."""
        if self.cores <= default:
            return default
        if self.others_busy() < OTHERS_MAX:
            return min(self.cores, MAX_THREADS)
        return default
