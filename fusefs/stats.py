"""The daemon's counters: requests by operation with a latency histogram, bytes, store transactions.

Counting sits on every request's path, so it costs a few integer additions: one ``OpCounters`` per
handler, found when the handler is decorated (fusefs/boundary.py), a fixed-bucket histogram (a bisect
into a constant tuple), no locks (everything counted runs on the trio thread, except the store
attempts of worker threads, whose lost increments under a thread switch would be a rounding error)
and no allocation.  Readers (the control channel, the Prometheus collector) take a ``snapshot``."""

from __future__ import annotations

import bisect
from typing import Any

#: Upper bounds of the latency buckets, in nanoseconds (10 us to 10 s); a last bucket takes the rest.
LATENCY_BOUNDS_NS: tuple[int, ...] = tuple(
    int(ms * 1_000_000)
    for ms in (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)
)


class OpCounters:
    """Requests of one operation: how many, how many answered with an error, and their latencies."""

    __slots__ = ("buckets", "count", "errors", "total_ns")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total_ns = 0
        self.buckets = [0] * (len(LATENCY_BOUNDS_NS) + 1)

    def observe(self, elapsed_ns: int) -> None:
        self.count += 1
        self.total_ns += elapsed_ns
        self.buckets[bisect.bisect_left(LATENCY_BOUNDS_NS, elapsed_ns)] += 1


#: The daemon's caches an operator may want to watch, with what a hit means.
CACHES = {
    "chunk_fds": "large-file reads and writes that found their chunk file open (else opened it)",
    "object_cache": "reads of chunks held on the object store served from the local cache; misses: objects "
    "fetched, for a read or ahead of a sequential one",
    "capability": "security.capability checks before writes answered from memory (else by the store)",
    "namespace": "getattr and lookup requests (and answers to time changes folded into a flush) answered "
    "from what this mount's transactions read and wrote (else by the store)",
}


class Counters:
    def __init__(self) -> None:
        self.operations: dict[str, OpCounters] = {}
        self.bytes_read = 0
        self.bytes_written = 0
        #: Operations run by the store runner, and their attempts that ended in a conflict (another
        #: transaction wrote what this one read) or in another retryable error (a commit outcome unknown,
        #: a transaction too old, a store recovering); each such attempt is run again.
        self.transactions = 0
        self.conflicts = 0
        self.retries = 0
        #: Further ``transact`` calls after one timed out in a store outage.
        self.outage_retries = 0

    def operation(self, name: str) -> OpCounters:
        """The counters of operation ``name`` (made on first use: at decoration, not per request)."""
        return self.operations.setdefault(name, OpCounters())

    def snapshot(self, open_files: int, caches: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """Everything counted so far, as plain data (JSON for the control channel); ``caches`` maps the
        daemon's caches (see ``CACHES``) to their hits and misses."""
        return {
            "operations": {
                name: {
                    "count": op.count,
                    "errors": op.errors,
                    "total_ns": op.total_ns,
                    "buckets": list(op.buckets),
                }
                for name, op in sorted(self.operations.items())
                if op.count
            },
            "latency_bounds_ns": list(LATENCY_BOUNDS_NS),
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "transactions": self.transactions,
            "conflicts": self.conflicts,
            "retries": self.retries,
            "outage_retries": self.outage_retries,
            "open_files": open_files,
            "caches": {name: {"hits": hits, "misses": misses} for name, (hits, misses) in caches.items()},
        }


#: The process's counters: one mount per daemon process.
COUNTERS = Counters()


def percentile_ms(buckets: list[int], bounds_ns: list[int], fraction: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``fraction`` quantile; None without requests.  A
    quantile in the open last bucket is reported as the largest bound."""
    total = sum(buckets)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return bounds_ns[min(index, len(bounds_ns) - 1)] / 1e6
    return bounds_ns[-1] / 1e6
