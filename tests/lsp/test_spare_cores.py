"""Reading prompts on every core only when the rest of the machine leaves them free."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from crlhf_lsp.backends.spare_cores import MAX_THREADS, SpareCores, busy_and_total


class Clocks:
    """The wall clock and our CPU seconds, set by the test (the jiffies come from a file)."""

    def __init__(self) -> None:
        self.wall, self.cpu = 100.0, 5.0


def _stat(path: Path, busy: int, idle: int) -> None:
    # user nice system idle iowait irq softirq steal: busy split over user and system
    path.write_text(f"cpu  {busy - busy // 3} 0 {busy // 3} {idle} 0 0 0 0 0 0\ncpu0 1 2 3\n")


@pytest.fixture
def machine(tmp_path: Path):
    clocks, stat = Clocks(), tmp_path / "stat"
    _stat(stat, busy=1000, idle=5000)
    spare = SpareCores(
        stat_path=stat,
        cores=4,
        our_cpu=lambda: clocks.cpu,
        clock=lambda: clocks.wall,
        ticks_per_s=100,
    )
    return spare, clocks, stat


def test_busy_and_total_read_the_first_line() -> None:
    assert busy_and_total("cpu  10 2 3 100 5 1 1 0 0 0\ncpu0 9 9 9 9\n") == (17, 122)
    with pytest.raises(ValueError, match="/proc/stat"):
        busy_and_total("MemTotal: 1 kB\n")


def test_every_core_when_only_we_were_busy(machine) -> None:
    spare, clocks, stat = machine
    clocks.wall += 2.0
    clocks.cpu += 1.5  # our model thread: 150 jiffies of the machine's 160
    _stat(stat, busy=1160, idle=5640)
    assert spare.threads(1) == 4
    assert spare.others == pytest.approx(0.05)


def test_the_default_share_when_another_process_used_a_core(machine) -> None:
    spare, clocks, stat = machine
    clocks.wall += 2.0
    clocks.cpu += 0.5
    _stat(stat, busy=1250, idle=5550)  # 2.5 core-seconds, 0.5 of them ours
    assert spare.threads(1) == 1
    assert spare.others == pytest.approx(1.0)


def test_a_look_too_soon_keeps_the_last_answer(machine) -> None:
    spare, clocks, stat = machine
    clocks.wall += 2.0
    _stat(stat, busy=1010, idle=5790)
    assert spare.threads(1) == 4
    clocks.wall += 0.05
    _stat(stat, busy=1400, idle=5790)  # a burst too short to judge by 10 ms jiffies
    assert spare.threads(1) == 4


def test_no_proc_stat_or_no_spare_core_keeps_the_default(tmp_path: Path) -> None:
    assert SpareCores(stat_path=tmp_path / "missing", cores=4).threads(1) == 1
    assert SpareCores(cores=1).threads(1) == 1
    assert MAX_THREADS >= 2


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")
def test_a_process_spinning_beside_us_is_seen_on_this_machine() -> None:
    spare = SpareCores(cores=4)  # as if there were cores to spare
    spin = "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.8)
        assert spare.threads(1) == 1
        assert spare.others > 0.5
    finally:
        child.wait()
