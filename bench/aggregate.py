"""Benchmark: crlhf's label aggregation against crowd-kit on the same simulated crowds.

    .venv/bin/python bench/aggregate.py            # ~8k and 1M labels, every mix
    .venv/bin/python bench/aggregate.py --quick    # ~8k labels only
    .venv/bin/python bench/aggregate.py --process  # whole processes on 1M labels' CSV

``--process``: the 1M-label crowd of each mix is written as the CLI's CSV files, then
``crlhf-train aggregate`` and a crowd-kit DawidSkene script (pandas' read_csv, fit with the
honeypots' truth, write the posteriors) each run as their own process: wall time and peak
RSS (``wait4``) of the whole process, accuracy read back from what each wrote.  Targets:
ours <= 1/20 of DawidSkene's wall time, <= 1/3 of its peak RSS, accuracy >= DS - 0.002.
CPU seconds (user + system) are printed too: on a shared machine they move less with the
load than wall time, which stretches the long DawidSkene run more than our short one.

For every mix of annotators and every size, each estimator runs on the same labels:
ours (em2, paper, paper-l1, mv) on a LabelSet, crowd-kit's (DawidSkene, OneCoinDawidSkene,
GLAD at the small size only, MajorityVote) on the equivalent pandas frame, built before
the clock starts.  DawidSkene gets the honeypots' truth (``true_labels``) like ours do.
Printed per row: accuracy on the non-honeypot lines, mean |estimated - true| reliability
over annotators, wall time of one fit, peak memory of one fit (tracemalloc, a second
run) and the time ratio against DawidSkene.  It is a benchmark, not a test: one core,
whatever else the machine is doing.  crowd-kit is a dev-only dependency.
"""

# ruff: noqa: E402 - the thread settings below must come before numpy is imported
from __future__ import annotations

import os

# One core for everyone (the "on one core"); it also keeps BLAS threads from
# fighting over a busy machine, which slows small solves (L-BFGS-B) by 10x.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import gc
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from crlhf_trainer.aggregation import aggregate
from crlhf_trainer.simulate import SimulatedCrowd, simulate_crowd

MIXES = {
    "honest": {"reliable": 0.6, "mediocre": 0.4},
    "spammers": {"reliable": 0.4, "mediocre": 0.3, "spammer": 0.15, "always_up": 0.15},
    "thumbs-up 40%": {"reliable": 0.4, "mediocre": 0.2, "always_up": 0.4},
    "adversaries 30%": {"reliable": 0.4, "mediocre": 0.3, "adversary": 0.3},
    "mixed": {
        "reliable": 0.35,
        "mediocre": 0.25,
        "spammer": 0.1,
        "always_up": 0.15,
        "adversary": 0.15,
    },
}
SIZES = {"8k": 2_000, "1M": 250_000}  # lines; 3-5 labels per line: ~4 labels per line
N_ANNOTATORS = 50

Fit = Callable[[], tuple[np.ndarray, np.ndarray | None]]  # -> (P(correct), reliability)


def ours(crowd: SimulatedCrowd, method: str) -> Fit:
    def fit():
        r = aggregate(crowd.labels, method)
        return r.p_correct, np.array([a.reliability for a in r.annotators])

    return fit


def crowdkit_fits(crowd: SimulatedCrowd, small: bool) -> dict[str, Fit]:
    import pandas as pd
    from crowdkit.aggregation import GLAD, DawidSkene, MajorityVote, OneCoinDawidSkene

    ls = crowd.labels
    # crowd-kit works on a frame of (task, worker, label); built outside the timings.
    df = pd.DataFrame({"task": ls.item_idx, "worker": ls.annotator_idx, "label": ls.label})
    gold_idx, gold_truth = ls.gold_arrays()
    true_labels = pd.Series(gold_truth, index=gold_idx)
    n, m = ls.n_items, ls.n_annotators

    def proba(frame) -> np.ndarray:
        # probas_: tasks x labels; tasks missing from it (none here) would stay at 0.5
        p = np.full(n, 0.5)
        p[frame.index.to_numpy()] = frame[1].to_numpy() if 1 in frame else 0.0
        return p

    def ds():
        est = DawidSkene(n_iter=100).fit(df, true_labels)
        prior = float(est.priors_[1])
        err = est.errors_  # P(observed | true), index (worker, observed), columns true
        # a worker who never said -1 (always-👍) has no (worker, -1) row: probability 0
        sens = np.array([err.loc[(j, 1), 1] if (j, 1) in err.index else 0.0 for j in range(m)])
        spec = np.array([err.loc[(j, -1), -1] if (j, -1) in err.index else 0.0 for j in range(m)])
        return proba(est.probas_), prior * sens + (1 - prior) * spec

    def one_coin():
        est = OneCoinDawidSkene(n_iter=100).fit(df)
        return proba(est.probas_), est.skills_.reindex(range(m)).to_numpy()

    def glad():
        est = GLAD(n_iter=100).fit(df)
        return proba(est.probas_), None  # GLAD's abilities are not probabilities

    def mv():
        est = MajorityVote().fit(df)
        return proba(est.probas_), est.skills_.reindex(range(m)).to_numpy()

    fits = {"crowdkit DawidSkene": ds, "crowdkit OneCoinDawidSkene": one_coin}
    if small:
        fits["crowdkit GLAD"] = glad
    fits["crowdkit MajorityVote"] = mv
    return fits


def measure(fit: Fit, memory: bool = True):
    """Wall time of one fit, then peak traced memory (MB) of a second one."""
    gc.collect()
    t0 = time.perf_counter()
    p, rel = fit()
    wall = time.perf_counter() - t0
    if not memory:
        return wall, None, p, rel
    del p, rel
    gc.collect()
    tracemalloc.start()
    p, rel = fit()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return wall, peak, p, rel


def run(size: str, mix_name: str, seed: int) -> list[dict]:
    crowd = simulate_crowd(SIZES[size], N_ANNOTATORS, MIXES[mix_name], seed=seed)
    free = np.ones(crowd.labels.n_items, dtype=bool)
    free[list(crowd.labels.gold)] = False
    truth = crowd.truth[free] > 0
    fits = {m: ours(crowd, m) for m in ("em2", "paper", "paper-l1", "mv")}
    fits.update(crowdkit_fits(crowd, small=size == "8k"))
    rows = []
    for name, fit in fits.items():
        # GLAD's M-step is pure Python: under tracemalloc it runs for many minutes.
        wall, peak, p, rel = measure(fit, memory=name != "crowdkit GLAD")
        print(f"#   {size} {mix_name} {name}: {wall:.2f} s, {peak} MB", flush=True)
        rows.append(
            {
                "size": size,
                "mix": mix_name,
                "method": name,
                "labels": crowd.labels.n_labels,
                "accuracy": float(((p[free] > 0.5) == truth).mean()),
                "rel_err": None
                if rel is None
                else float(np.abs(rel - crowd.true_reliability).mean()),
                "wall": wall,
                "peak": peak,
            }
        )
    ds = next(r for r in rows if r["method"] == "crowdkit DawidSkene")
    for r in rows:
        r["ratio"] = r["wall"] / ds["wall"]
        r["acc_vs_ds"] = r["accuracy"] - ds["accuracy"]
        r["mem_ratio"] = None if r["peak"] is None else r["peak"] / ds["peak"]
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        "| size | mix | method | accuracy | Δacc vs DS | reliability error | wall s "
        "| peak MB | time / DS | mem / DS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rel = "n/a" if r["rel_err"] is None else f"{r['rel_err']:.3f}"
        peak = "n/a" if r["peak"] is None else f"{r['peak']:.1f}"
        mem = "n/a" if r["mem_ratio"] is None else f"{r['mem_ratio']:.3f}"
        print(
            f"| {r['size']} | {r['mix']} | {r['method']} | {r['accuracy']:.4f} "
            f"| {r['acc_vs_ds']:+.4f} | {rel} | {r['wall']:.3f} | {peak} "
            f"| {r['ratio']:.3f} | {mem} |",
            flush=True,
        )


def check_targets(rows: list[dict]) -> list[str]:
    """em2's targets: accuracy >= DS - 0.002 everywhere; at 1M, <= 1/10 time, <= 1/3 memory."""
    misses = []
    for r in rows:
        if r["method"] != "em2":
            continue
        where = f"{r['size']} {r['mix']}"
        if r["acc_vs_ds"] < -0.002:
            misses.append(f"{where}: accuracy {r['acc_vs_ds']:+.4f} vs DawidSkene")
        if r["size"] == "1M" and r["ratio"] > 0.1:
            misses.append(f"{where}: time ratio {r['ratio']:.3f} > 0.1")
        if r["size"] == "1M" and r["mem_ratio"] > 1 / 3:
            misses.append(f"{where}: memory ratio {r['mem_ratio']:.3f} > 1/3")
    return misses


DS_SCRIPT = """
import sys
import pandas as pd
from crowdkit.aggregation import DawidSkene
labels, gold, out = sys.argv[1:4]
df = pd.read_csv(labels).rename(columns={"item": "task", "annotator": "worker"})
df["label"] = df["label"].where(df["label"] == 1, -1)
g = pd.read_csv(gold)
truth = pd.Series(g["label"].where(g["label"] == 1, -1).to_numpy(), index=g["item"])
est = DawidSkene(n_iter=100).fit(df, truth)
p = est.probas_[1] if 1 in est.probas_ else 0.0
p.rename("p_correct").rename_axis("item").to_csv(out, float_format="%.6f")
"""


def timed_process(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def write_crowd_csv(ls, folder: str) -> tuple[str, str]:
    """The labels and the honeypots' truth as the CLI's two CSV files in ``folder``."""
    labels, gold = os.path.join(folder, "labels.csv"), os.path.join(folder, "gold.csv")
    items = np.array(ls.items, dtype=object)
    names = np.array(ls.annotators, dtype=object)
    with open(labels, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["item", "annotator", "label"])
        w.writerows(
            zip(items[ls.item_idx], names[ls.annotator_idx], ls.label.tolist(), strict=True)
        )
    with open(gold, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["item", "label"])
        w.writerows((ls.items[i], t) for i, t in ls.gold.items())
    return labels, gold


def run_process(mix_name: str, seed: int, repeats: int) -> list[dict]:
    crowd = simulate_crowd(SIZES["1M"], N_ANNOTATORS, MIXES[mix_name], seed=seed)
    ls = crowd.labels
    free = np.ones(ls.n_items, dtype=bool)
    free[list(ls.gold)] = False
    with tempfile.TemporaryDirectory() as tmp:
        labels, gold = write_crowd_csv(ls, tmp)
        bindir = os.path.dirname(sys.executable)
        runs = {
            "crlhf-train aggregate (em2)": lambda out: [
                os.path.join(bindir, "crlhf-train"),
                "aggregate",
                "--labels",
                labels,
                "--gold",
                gold,
                "--out",
                out,
            ],
            "crowdkit DawidSkene": lambda out: [sys.executable, "-c", DS_SCRIPT, labels, gold, out],
        }
        rows = []
        for name, argv in runs.items():
            out = os.path.join(tmp, "out.csv")
            best = min(timed_process(argv(out)) for _ in range(repeats))  # fastest of n
            with open(out, newline="") as f:
                p = {r["item"]: float(r["p_correct"]) for r in csv.DictReader(f)}
            post = np.array([p.get(item, 0.5) for item in ls.items])
            acc = float(((post[free] > 0.5) == (crowd.truth[free] > 0)).mean())
            print(
                f"#   process {mix_name} {name}: {best[0]:.2f} s, {best[1]:.0f} MB, "
                f"{best[2]:.2f} s CPU",
                flush=True,
            )
            rows.append(
                {
                    "mix": mix_name,
                    "method": name,
                    "labels": ls.n_labels,
                    "accuracy": acc,
                    "wall": best[0],
                    "peak": best[1],
                    "cpu": best[2],
                }
            )
    ds = rows[-1]
    for r in rows:
        r["ratio"], r["mem_ratio"] = r["wall"] / ds["wall"], r["peak"] / ds["peak"]
        r["cpu_ratio"] = r["cpu"] / ds["cpu"]
        r["acc_vs_ds"] = r["accuracy"] - ds["accuracy"]
    return rows


def print_process_table(rows: list[dict]) -> None:
    try:
        load = "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "load n/a"
    print(f"whole processes, 1M labels, {os.cpu_count()} cores, {load}")
    print(
        "| mix | process | accuracy | Δacc vs DS | wall s | CPU s | peak RSS MB | time / DS "
        "| CPU / DS | RSS / DS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mix']} | {r['method']} | {r['accuracy']:.4f} | {r['acc_vs_ds']:+.4f} "
            f"| {r['wall']:.2f} | {r['cpu']:.2f} | {r['peak']:.0f} | {r['ratio']:.3f} "
            f"| {r['cpu_ratio']:.3f} | {r['mem_ratio']:.3f} |"
        )
    misses = [
        f"{r['mix']}: {what}"
        for r in rows
        if r["method"].startswith("crlhf")
        for what, bad in (
            (f"time ratio {r['ratio']:.3f} > 1/20", r["ratio"] > 1 / 20),
            (f"RSS ratio {r['mem_ratio']:.3f} > 1/3", r["mem_ratio"] > 1 / 3),
            (f"accuracy {r['acc_vs_ds']:+.4f} vs DS", r["acc_vs_ds"] < -0.002),
        )
        if bad
    ]
    print("process targets: " + ("all met" if not misses else "MISSED: " + "; ".join(misses)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the ~8k-label size only")
    parser.add_argument("--size", action="append", choices=sorted(SIZES), help="repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mix", action="append", choices=sorted(MIXES), help="repeatable")
    parser.add_argument(
        "--process", action="store_true", help="whole CLI process vs DawidSkene's, 1M labels"
    )
    parser.add_argument("--repeats", type=int, default=1, help="--process: best of n runs")
    args = parser.parse_args()
    if args.process:
        rows = []
        for mix_name in args.mix or ["mixed"]:
            rows += run_process(mix_name, args.seed, args.repeats)
        print()
        print_process_table(rows)
        return
    sizes = ["8k"] if args.quick else (args.size or list(SIZES))
    mixes = args.mix or list(MIXES)
    rows = []
    for size in sizes:
        for mix_name in mixes:
            new = run(size, mix_name, args.seed)
            rows += new
            print(f"# done {size} {mix_name}", flush=True)
    print()
    print_table(rows)
    misses = check_targets(rows)
    print()
    print("em2 targets: " + ("all met" if not misses else "MISSED: " + "; ".join(misses)))


if __name__ == "__main__":
    main()
