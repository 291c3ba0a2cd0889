#!/usr/bin/env python3
"""Micro-benchmark of the store backends through fusefs.store_runner.StoreRunner.

Transactions per second and median latency for 1-key reads, 1-key writes, 10-key writes and 1 000-key
range reads, each with 1 and with 64 concurrent trio tasks, on the embedded store (always, in a temporary
directory) and on FoundationDB (when --fdb-cluster-file or FDB_CLUSTER_FILE is given).  Also the cost
of one direct (no runner, no trio) 1-key read transaction on the embedded store.

    python scripts/store_bench.py [--seconds 2] [--fdb-cluster-file PATH] [--json PATH] [--dir DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fdb.tuple
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusefs.store_runner import StoreRunner  # noqa: E402
from metadata.store import Store, Transaction  # noqa: E402

POPULATION_KEYS = 10_000
VALUE_BYTES = 100
RANGE_KEYS = 1_000
TASK_COUNTS = (1, 64)
DIRECT_READ_SECONDS = 1.0


@dataclass
class Cell:
    backend: str
    workload: str
    tasks: int
    transactions: int
    tx_per_s: float
    median_us: float


# -- transaction functions (the transaction first, as everywhere in metadata/) ------------------------
def read_one(tr: Transaction, key: bytes) -> bytes | None:
    return tr.get(key)


def write_keys(tr: Transaction, keys: list[bytes], value: bytes) -> None:
    for key in keys:
        tr.set(key, value)


def read_range(tr: Transaction, begin: bytes, end: bytes) -> int:
    return len(tr.get_range(begin, end, limit=RANGE_KEYS))


class Workloads:
    """Each workload: a function that draws the arguments of one transaction from a random generator."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.value = os.urandom(VALUE_BYTES)

    def key(self, i: int) -> bytes:
        return fdb.tuple.pack(("bench", i), prefix=self.prefix)

    def all(self) -> dict[str, Callable[[random.Random], tuple[Callable[..., Any], tuple[Any, ...]]]]:
        def one_read(rng: random.Random) -> tuple[Callable[..., Any], tuple[Any, ...]]:
            return read_one, (self.key(rng.randrange(POPULATION_KEYS)),)

        def one_write(rng: random.Random) -> tuple[Callable[..., Any], tuple[Any, ...]]:
            return write_keys, ([self.key(rng.randrange(POPULATION_KEYS))], self.value)

        def ten_writes(rng: random.Random) -> tuple[Callable[..., Any], tuple[Any, ...]]:
            return write_keys, ([self.key(rng.randrange(POPULATION_KEYS)) for _ in range(10)], self.value)

        def range_read(rng: random.Random) -> tuple[Callable[..., Any], tuple[Any, ...]]:
            start = rng.randrange(POPULATION_KEYS - RANGE_KEYS)
            return read_range, (self.key(start), self.key(start + RANGE_KEYS))

        return {
            "1-key read": one_read,
            "1-key write": one_write,
            "10-key write": ten_writes,
            "1000-key range read": range_read,
        }

    def populate(self, store: Store) -> None:
        batch = 2_000
        for start in range(0, POPULATION_KEYS, batch):
            keys = [self.key(i) for i in range(start, min(start + batch, POPULATION_KEYS))]
            store.transact(functools.partial(write_keys, keys=keys, value=self.value))

    def clear(self, store: Store) -> None:
        store.transact(lambda tr: tr.clear_range(self.prefix, self.prefix + b"\xff"))


async def measure(
    runner: StoreRunner,
    draw: Callable[[random.Random], tuple[Callable[..., Any], tuple[Any, ...]]],
    tasks: int,
    seconds: float,
) -> tuple[int, float, float]:
    """(transactions, elapsed seconds, median latency in µs) of ``tasks`` tasks looping for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            fn, args = draw(rng)
            started = time.perf_counter()
            await runner.run(fn, *args)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for seed in range(tasks):
            nursery.start_soon(worker, seed)
    elapsed = time.perf_counter() - started
    return len(latencies), elapsed, statistics.median(latencies) * 1e6


async def bench_backend(name: str, store: Store, seconds: float) -> list[Cell]:
    workloads = Workloads(fdb.tuple.pack(("fusefs-bench", uuid.uuid4().hex)))
    runner = StoreRunner(store)
    cells = []
    workloads.populate(store)
    try:
        for workload, draw in workloads.all().items():
            for tasks in TASK_COUNTS:
                count, elapsed, median_us = await measure(runner, draw, tasks, seconds)
                cells.append(Cell(name, workload, tasks, count, count / elapsed, median_us))
                print(
                    f"  {name:6} {workload:20} {tasks:3} tasks: {count / elapsed:10.0f} tx/s", file=sys.stderr
                )
    finally:
        workloads.clear(store)
    return cells


def direct_read_us(store: Store) -> float:
    """Median µs of one ``store.transact`` 1-key read called directly (no runner, no event loop)."""
    workloads = Workloads(fdb.tuple.pack(("fusefs-bench-direct", uuid.uuid4().hex)))
    store.transact(lambda tr: tr.set(workloads.key(0), workloads.value))
    key = workloads.key(0)
    samples = []
    deadline = time.perf_counter() + DIRECT_READ_SECONDS
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        store.transact(lambda tr: tr.get(key))
        samples.append(time.perf_counter() - started)
    workloads.clear(store)
    return statistics.median(samples) * 1e6


def markdown(cells: list[Cell]) -> str:
    lines = ["| backend | workload | tasks | tx/s | median µs per tx |", "|---|---|---:|---:|---:|"]
    for c in cells:
        lines.append(f"| {c.backend} | {c.workload} | {c.tasks} | {c.tx_per_s:,.0f} | {c.median_us:,.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per cell (default 2)")
    parser.add_argument(
        "--fdb-cluster-file",
        default=os.environ.get("FDB_CLUSTER_FILE"),
        help="benchmark FoundationDB too (default: $FDB_CLUSTER_FILE)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--dir", help="directory for the embedded store's file (default: a temporary one)")
    args = parser.parse_args()

    from metadata.sqlite_store import SqliteStore

    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="store-bench-", dir=args.dir) as tmp:
        sqlite_store = SqliteStore(os.path.join(tmp, "bench.sqlite"))
        try:
            print(f"sqlite store in {tmp}", file=sys.stderr)
            cells += trio.run(bench_backend, "sqlite", sqlite_store, args.seconds)
            direct_us = direct_read_us(sqlite_store)
        finally:
            sqlite_store.close()

    if args.fdb_cluster_file:
        from metadata.fdb_store import FdbStore

        fdb_store = FdbStore(args.fdb_cluster_file)
        try:
            cells += trio.run(bench_backend, "fdb", fdb_store, args.seconds)
        finally:
            fdb_store.close()
    else:
        print("FoundationDB skipped: no --fdb-cluster-file and FDB_CLUSTER_FILE unset", file=sys.stderr)

    print(markdown(cells))
    print(f"\nsqlite, direct store.transact 1-key read (no runner, no trio): median {direct_us:.1f} µs")
    if args.json:
        args.json.write_text(
            json.dumps({"cells": [asdict(c) for c in cells], "sqlite_direct_read_us": direct_us}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
