"""Ingest benchmark of crlhf-store: a real uvicorn server, concurrent httpx clients.

For SQLite and (when reachable) PostgreSQL: start ``crlhf-store serve`` on a fresh
database, let ``--clients`` annotators post ``--batches`` batches of ``--batch`` line
ratings each (every 10th batch is sent twice, as a retry would), while a trainer pages
through ``/v1/labels/export`` the whole time. Prints ratings/s, p50/p99 latency per batch,
and what the export saw against what was sent: lost and duplicated ratings must be 0.

    .venv/bin/python bench/store_ingest.py [--clients 32] [--batches 20] [--batch 100]

Targets (issue 2): ≥ 5,000 ratings/s on PostgreSQL and ≥ 2,000/s on SQLite with batches
of 100, p99 < 100 ms at 32 clients. Numbers depend on the machine: note its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def start_server(database_url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crlhf_store",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--database-url",
            database_url,
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((data_dir / "server.log").read_text())
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def annotator(
    url: str,
    token: str,
    completion_ids: list[str],
    args: argparse.Namespace,
    latencies: list[float],
    sent: Counter[tuple],
    rng: random.Random,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        for b in range(args.batches):
            rows = [
                {
                    "event_id": str(uuid.uuid4()),
                    "completion_id": rng.choice(completion_ids),
                    "line": rng.randrange(LINES),
                    "label": rng.choice((1, -1)),
                }
                for _ in range(args.batch)
            ]
            for attempt in range(2 if b % 10 == 9 else 1):  # every 10th batch is retried
                t0 = time.perf_counter()
                r = await http.post("/v1/ratings", json={"ratings": rows})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                if attempt == 0:
                    assert r.json()["stored"] == len(rows), r.text
                else:
                    assert r.json()["duplicates"] == len(rows), r.text
            sent.update((token, x["completion_id"], x["line"], x["label"]) for x in rows)


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


async def drive(url: str, tokens: list[str], trainer: str, args: argparse.Namespace) -> dict:
    completion_ids = [str(uuid.uuid4()) for _ in range(200)]
    text = "\n".join(f"x{i} = {i}" for i in range(LINES))
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for i, cid in enumerate(completion_ids):
            body = {"completions": [{"id": cid, "prompt": "", "text": text, "model": "bench"}]}
            owner = tokens[i % len(tokens)]
            r = await http.post(
                "/v1/completions", json=body, headers={"Authorization": f"Bearer {owner}"}
            )
            r.raise_for_status()
    latencies: list[float] = []
    sent: Counter[tuple] = Counter()
    seen: list[dict] = []
    done = asyncio.Event()
    reader = asyncio.create_task(exporter(url, trainer, done, seen))
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            annotator(url, tok, completion_ids, args, latencies, sent, random.Random(i))
            for i, tok in enumerate(tokens)
        )
    )
    wall = time.perf_counter() - t0
    done.set()
    await reader
    names = {f"bench-{i}": tok for i, tok in enumerate(tokens)}
    exported = Counter(
        (names[x["annotator"]], x["completion_id"], x["line"], x["label"]) for x in seen
    )
    ids = Counter(x["rating_id"] for x in seen)
    stored = sum(sent.values())
    latencies.sort()
    return {
        "ratings": stored,
        "ratings_per_s": stored / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
        "lost": sum((sent - exported).values()),
        "duplicated": sum((exported - sent).values()) + sum(n - 1 for n in ids.values()),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to judge a loaded machine's numbers."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_backend(name: str, database_url: str, data_dir: Path, args: argparse.Namespace) -> dict:
    tokens, trainer = make_tokens(database_url, args.clients)
    proc, url = start_server(database_url, data_dir)
    try:
        cpu0 = cpu_seconds(proc.pid)
        result = asyncio.run(drive(url, tokens, trainer, args))
        cpu = cpu_seconds(proc.pid) - cpu0
        # Server CPU per stored rating (ingest, completions and the export included): what
        # the store would do on one idle core, whatever else the machine is running.
        result["ratings_per_cpu_s"] = result["ratings"] / cpu if cpu else float("nan")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="batches per client")
    parser.add_argument("--batch", type=int, default=100, help="ratings per batch")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    print(
        f"{args.clients} clients x {args.batches} batches x {args.batch} ratings; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sqlite"):
            data = Path(tmp) / "sqlite"
            data.mkdir()
            results["sqlite"] = run_backend("sqlite", f"sqlite:///{data / 'store.db'}", data, args)
        if args.only in (None, "postgresql"):
            with pg_database() as url:
                if url is None:
                    print("!!! PostgreSQL unreachable on 127.0.0.1:5432: skipped !!!")
                else:
                    data = Path(tmp) / "pg"
                    data.mkdir()
                    results["postgresql"] = run_backend("postgresql", url, data, args)
    print(
        f"{'backend':<11} {'ratings/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} "
        f"{'lost':>5} {'dup':>5} {'ratings/server-CPU-s':>21}"
    )
    for name, r in results.items():
        print(
            f"{name:<11} {r['ratings_per_s']:>10.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['requests']:>9} {r['lost']:>5} {r['duplicated']:>5} "
            f"{r['ratings_per_cpu_s']:>21.0f}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0 if all(r["lost"] == 0 and r["duplicated"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
