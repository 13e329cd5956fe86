"""Ingest benchmark of crlhf-store: a real uvicorn server, concurrent httpx clients.

For SQLite and (when reachable) PostgreSQL: start ``crlhf-store serve`` on a fresh
database, and while a trainer pages through ``/v1/labels/export`` the whole time:

1. **throughput**: ``--clients`` annotators post ``--batches`` batches of ``--batch`` line
   ratings each, back to back (every 10th batch is sent twice, as a retry would);
2. **latency**: the same clients post at a fixed total rate (``--rate``; default the
   backend's throughput target), each on its own schedule, for ``--seconds``.

Prints ratings/s and p50/p99 latency per batch for both, and what the export saw against
what was sent: lost and duplicated ratings must be 0.

    .venv/bin/python bench/store_ingest.py [--clients 32] [--batches 20] [--batch 100]
                                           [--workers N] [--rate R] [--seconds S]

Targets (issue 2): ≥ 5,000 ratings/s on PostgreSQL and ≥ 2,000/s on SQLite with batches
of 100, p99 < 100 ms at 32 clients, nothing lost or duplicated. Why two phases: with 32
clients that never pause, every batch waits for the ones ahead of it, and Little's law fixes
the mean latency at clients × batch ÷ throughput (32 × 100 ÷ 5,000/s = 640 ms): a p99 under
100 ms in that loop would need 32,000 ratings/s. So the throughput target is measured back
to back, the latency target at 32 clients sending at the target rate. Numbers depend on the
machine, and here the clients share its cores with the server and the database: note the
load printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test"}
LINES = 40


def make_tokens(database_url: str, clients: int) -> tuple[list[str], str]:
    from crlhf_store.db import Database
    from crlhf_store.tokens import create_annotator

    db = Database(database_url, pool_size=1, max_overflow=0)
    db.migrate()
    with db.writing() as s:
        annotators = [create_annotator(s, name=f"bench-{i}") for i in range(clients)]
        trainer = create_annotator(s, name="bench-trainer", scope="trainer")
    db.dispose()
    return annotators, trainer


def start_server(
    database_url: str, data_dir: Path, workers: int = 1
) -> tuple[subprocess.Popen[bytes], str]:
    from crlhf_store.process import free_port, serve_command, wait_ready

    port = free_port()
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115
    argv = serve_command(port=port, data_dir=data_dir, database_url=database_url, workers=workers)
    # Raw ingest: clients rate completions the queue never served them, faster than an
    # annotator's rate limit; the store refuses both by default.
    env = os.environ | {
        "CRLHF_RATINGS_NEED_TASK": "false",
        "CRLHF_RATING_RATE_PER_MINUTE": "0",
        "CRLHF_RATING_QUOTA_PER_DAY": "0",
    }
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    server_log = data_dir / "server.log"
    try:
        wait_ready(proc, url, timeout=120, log=lambda: ":\n" + server_log.read_text())
    except Exception:
        proc.kill()
        raise
    return proc, url


def batch_of(token: str, completion_ids: list[str], n: int, rng: random.Random) -> list[dict]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "completion_id": rng.choice(completion_ids),
            "line": rng.randrange(LINES),
            "label": rng.choice((1, -1)),
        }
        for _ in range(n)
    ]


async def annotator(
    http: httpx.AsyncClient,
    batches: list[list[dict]],
    latencies: list[float],
    period: float | None = None,
) -> None:
    """Post ``batches`` back to back, or one every ``period`` seconds (from a random phase,
    so 32 clients do not fire together); every 10th batch is retried once."""
    loop = asyncio.get_running_loop()
    start = loop.time() + (random.uniform(0, period) if period else 0)
    for b, rows in enumerate(batches):
        if period:
            await asyncio.sleep(max(0.0, start + b * period - loop.time()))
        for attempt in range(2 if b % 10 == 9 else 1):
            t0 = time.perf_counter()
            r = await http.post("/v1/ratings", json={"ratings": rows})
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            key = "stored" if attempt == 0 else "duplicates"
            assert r.json()[key] == len(rows), r.text


async def exporter(url: str, token: str, done: asyncio.Event, seen: list[dict]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    after: str | None = None
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        while True:
            finished = done.is_set()
            while True:
                params = {"limit": 10000} | ({"after": after} if after else {})
                page = (await http.get("/v1/labels/export", params=params)).json()
                seen.extend(page["labels"])
                if not page["labels"]:
                    break
                after = page["next"]
            if finished:
                return
            await asyncio.sleep(0.5)


def summary(latencies: list[float], ratings: int, wall: float) -> dict:
    latencies = sorted(latencies)
    return {
        "ratings_per_s": ratings / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
    }


async def phase(
    clients: list[httpx.AsyncClient],
    plans: list[list[list[dict]]],
    period: float | None,
) -> dict:
    latencies: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            annotator(http, plan, latencies, period)
            for http, plan in zip(clients, plans, strict=True)
        )
    )
    return summary(latencies, sum(len(b) for plan in plans for b in plan), time.perf_counter() - t0)


async def drive(url: str, tokens: list[str], trainer: str, args: argparse.Namespace) -> dict:
    completion_ids = [str(uuid.uuid4()) for _ in range(200)]
    text = "\n".join(f"x{i} = {i}" for i in range(LINES))
    clients = [
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {t}"}, timeout=60)
        for t in tokens
    ]
    for i, cid in enumerate(completion_ids):
        body = {"completions": [{"id": cid, "prompt": "", "text": text, "model": "bench"}]}
        (await clients[i % len(clients)].post("/v1/completions", json=body)).raise_for_status()
    rngs = [random.Random(i) for i in range(len(tokens))]
    # Rows are made before the clock starts: the clients share the CPUs with the server.
    throughput_plans = [
        [batch_of(t, completion_ids, args.batch, rng) for _ in range(args.batches)]
        for t, rng in zip(tokens, rngs, strict=True)
    ]
    period = len(tokens) * args.batch / args.rate
    paced = max(1, round(args.seconds / period))
    latency_plans = [
        [batch_of(t, completion_ids, args.batch, rng) for _ in range(paced)]
        for t, rng in zip(tokens, rngs, strict=True)
    ]
    seen: list[dict] = []
    done = asyncio.Event()
    reader = asyncio.create_task(exporter(url, trainer, done, seen))
    result = {
        "throughput": await phase(clients, throughput_plans, None),
        "latency": await phase(clients, latency_plans, period),
    }
    done.set()
    await reader
    for http in clients:
        await http.aclose()
    names = {f"bench-{i}": tok for i, tok in enumerate(tokens)}
    sent: Counter[tuple] = Counter(
        (tok, x["completion_id"], x["line"], x["label"])
        for tok, plans in zip(
            tokens, zip(throughput_plans, latency_plans, strict=True), strict=True
        )
        for plan in plans
        for rows in plan
        for x in rows
    )
    exported = Counter(
        (names[x["annotator"]], x["completion_id"], x["line"], x["label"]) for x in seen
    )
    ids = Counter(x["rating_id"] for x in seen)
    result["ratings"] = sum(sent.values())
    result["lost"] = sum((sent - exported).values())
    result["duplicated"] = sum((exported - sent).values()) + sum(n - 1 for n in ids.values())
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (the workers), to judge a
    loaded machine's numbers."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def run_backend(
    name: str, database_url: str, data_dir: Path, args: argparse.Namespace, workers: int
) -> dict:
    tokens, trainer = make_tokens(database_url, args.clients)
    proc, url = start_server(database_url, data_dir, workers)
    try:
        cpu0 = cpu_seconds(proc.pid)
        result = asyncio.run(drive(url, tokens, trainer, args))
        cpu = cpu_seconds(proc.pid) - cpu0
        # Server CPU per stored rating (ingest, completions and the export included): what
        # the store would do on one idle core, whatever else the machine is running.
        result["ratings_per_cpu_s"] = result["ratings"] / cpu if cpu else float("nan")
        result["workers"] = workers
        return result
    finally:
        proc.terminate()
        proc.wait(15)


@contextlib.contextmanager
def pg_database():  # type: ignore[no-untyped-def]
    import psycopg

    conn = None
    for user in ("postgres", "root"):
        with contextlib.suppress(Exception):
            conn = psycopg.connect(**PG, user=user, autocommit=True, connect_timeout=3)
            break
    if conn is None:
        yield None
        return
    name = f"crlhf_bench_{os.getpid()}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@{PG['host']}:{PG['port']}/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


TARGETS = {"sqlite": 2000, "postgresql": 5000}
"""Ratings/s each backend must ingest (issue 2); also the default rate of the latency phase."""
P99_TARGET_MS = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="batches per client, phase 1")
    parser.add_argument("--batch", type=int, default=100, help="ratings per batch")
    parser.add_argument(
        "--rate", type=float, help="ratings/s of phase 2 (default: the backend's target)"
    )
    parser.add_argument("--seconds", type=float, default=30, help="length of phase 2")
    parser.add_argument(
        "--workers",
        type=int,
        help="store processes (default: 1 on SQLite, one per CPU on PostgreSQL)",
    )
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    print(
        f"{args.clients} clients x {args.batches} batches x {args.batch} ratings, then "
        f"{args.seconds:.0f} s at a fixed rate; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("sqlite", "postgresql"):
            if args.only not in (None, name):
                continue
            run = argparse.Namespace(**vars(args))
            run.rate = args.rate or TARGETS[name]
            workers = args.workers or (1 if name == "sqlite" else os.cpu_count() or 1)
            data = Path(tmp) / name
            data.mkdir()
            sqlite = contextlib.nullcontext(f"sqlite:///{data / 'store.db'}")
            with pg_database() if name == "postgresql" else sqlite as url:
                if url is None:
                    print("!!! PostgreSQL unreachable on 127.0.0.1:5432: skipped !!!")
                    continue
                results[name] = run_backend(name, url, data, run, workers)
                results[name]["rate"] = run.rate
    print_table(results)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0 if all(r["lost"] == 0 and r["duplicated"] == 0 for r in results.values()) else 1


def print_table(results: dict[str, dict]) -> None:
    print(
        f"{'backend':<11} {'phase':<22} {'ratings/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'requests':>9}  verdict"
    )
    for name, r in results.items():
        t, lat = r["throughput"], r["latency"]
        ok = t["ratings_per_s"] >= TARGETS[name]
        print(
            f"{name:<11} {'back to back':<22} {t['ratings_per_s']:>10.0f} {t['p50_ms']:>8.1f} "
            f"{t['p99_ms']:>8.1f} {t['requests']:>9}  "
            f"≥ {TARGETS[name]:,}/s: {'OK' if ok else 'MISSED'}"
        )
        ok = lat["p99_ms"] < P99_TARGET_MS
        print(
            f"{'':<11} {'at ' + format(r['rate'], ',.0f') + '/s':<22} "
            f"{lat['ratings_per_s']:>10.0f} {lat['p50_ms']:>8.1f} {lat['p99_ms']:>8.1f} "
            f"{lat['requests']:>9}  p99 < {P99_TARGET_MS} ms: {'OK' if ok else 'MISSED'}"
        )
        print(
            f"{'':<11} {r['workers']} worker(s); {r['ratings']:,} ratings: lost {r['lost']}, "
            f"duplicated {r['duplicated']}; {r['ratings_per_cpu_s']:,.0f} ratings per "
            "server CPU-second"
        )


if __name__ == "__main__":
    sys.exit(main())
