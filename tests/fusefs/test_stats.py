"""The counters' histogram and percentiles, the runner's retry counts, and the control channel's answers,
without a mount."""

from __future__ import annotations

import os

import trio

from fusefs.control import answer
from fusefs.stats import COUNTERS, LATENCY_BOUNDS_NS, Counters, percentile_ms
from fusefs.store_runner import StoreRunner
from metadata.store import RetryableError, Store, Transaction, TransactionConflict, TransactionTooOld


def test_latencies_fall_into_fixed_buckets_and_give_percentiles():
    counters = Counters()
    op = counters.operation("read")
    assert counters.operation("read") is op  # one set of counters per operation
    for elapsed_ns in (5_000, 10_000, 80_000, 3_000_000, 60_000_000_000):
        op.observe(elapsed_ns)
    assert op.count == 5 and op.total_ns == 60_003_095_000
    assert op.buckets[0] == 2  # up to and including 10 us
    assert op.buckets[-1] == 1  # beyond the last bound
    snapshot = counters.snapshot(open_files=3, caches={"chunk_fds": (7, 2)})
    assert snapshot["open_files"] == 3
    assert snapshot["caches"] == {"chunk_fds": {"hits": 7, "misses": 2}}
    assert snapshot["operations"]["read"]["buckets"] == op.buckets
    bounds = list(LATENCY_BOUNDS_NS)
    assert percentile_ms(op.buckets, bounds, 0.4) == 0.01
    assert percentile_ms(op.buckets, bounds, 0.6) == 0.1
    assert percentile_ms(op.buckets, bounds, 0.99) == bounds[-1] / 1e6  # the open bucket: the last bound
    assert percentile_ms([0] * len(op.buckets), bounds, 0.5) is None


def test_the_runner_counts_conflicts_apart_from_other_retries(store: Store):
    """A transaction function fails its first attempts as a store would: a conflict twice, then a
    transaction too old; the runner counts each failed attempt by its cause."""
    failures: list[RetryableError] = [
        TransactionConflict("conflict"),
        TransactionTooOld("too old"),
        TransactionConflict("conflict"),
    ]

    def flaky(tr: Transaction, key: bytes) -> bytes:
        tr.set(key, b"v")
        if failures:
            raise failures.pop()
        return key

    before = (COUNTERS.transactions, COUNTERS.conflicts, COUNTERS.retries)
    assert trio.run(StoreRunner(store).run, flaky, b"k") == b"k"
    after = (COUNTERS.transactions, COUNTERS.conflicts, COUNTERS.retries)
    assert [new - old for new, old in zip(after, before, strict=True)] == [1, 2, 1]


def test_control_channel_answers():
    stats = {"operations": {}}
    assert answer("stats", os.getuid(), lambda: stats) is stats
    assert answer("bogus", os.getuid(), lambda: stats) == {"error": "unknown request 'bogus'"}
    assert "refused" in answer("stats", os.getuid() + 1, lambda: stats)["error"]
