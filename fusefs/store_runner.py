"""Running store transactions from trio.

Store backends are synchronous (``Store.transact`` blocks the calling thread).  The embedded store
answers in tens of microseconds, so its transactions run inline on the event loop: a thread hop would
cost more than the transaction.  FoundationDB transactions wait on the network; they run in worker
threads, and because the bindings release the GIL while a thread blocks on a future, N trio tasks keep
up to N transactions in flight (FoundationDB's throughput comes only from many transactions in flight).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from metadata.store import Store, Transaction, Watch

T = TypeVar("T")

#: A waiting watch occupies a worker thread for at most this long per hop, so a cancelled wait leaves
#: behind a thread that ends within this time instead of one that blocks until the key changes.
WATCH_POLL_S = 1.0


class StoreRunner:
    """Runs transaction functions on ``store`` on behalf of trio tasks."""

    def __init__(self, store: Store, max_threads: int = 128) -> None:
        self.store = store
        self._limiter = trio.CapacityLimiter(max_threads)
        # Watches get their own threads: waiting watches must never starve transactions of workers.
        self._watch_limiter = trio.CapacityLimiter(max_threads)

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``store.transact(fn(tr, *args))``: the result of the committed attempt.

        Cancellation is honoured only before the transaction starts: once it runs, it runs to its end
        (a cancelled caller must not be told "failed" about a transaction that committed)."""
        call = functools.partial(self.store.transact, functools.partial(_with_args, fn, args))
        if not self.store.blocks_event_loop:
            # No yield to the event loop: a request handler runs to its answer at once, which keeps a
            # request's latency low (loops of transactions in background tasks yield between them).
            return call()
        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def wait_watch(self, watch: Watch, timeout_s: float | None = None) -> bool:
        """Wait for ``watch`` to fire (True) or ``timeout_s`` to pass (False), in worker threads.

        Cancellable: the thread of a cancelled wait is abandoned and ends by itself within
        ``WATCH_POLL_S``; the watch stays valid and can be waited on again."""
        deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            hop_s = min(WATCH_POLL_S, max(remaining, 0.0))
            fired = await trio.to_thread.run_sync(
                watch.wait, hop_s, abandon_on_cancel=True, limiter=self._watch_limiter
            )
            if fired:
                return True
            if remaining <= WATCH_POLL_S:
                return False


def _with_args(fn: Callable[..., T], args: tuple[Any, ...], tr: Transaction) -> T:
    return fn(tr, *args)
