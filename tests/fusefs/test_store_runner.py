"""fusefs.store_runner.StoreRunner on the embedded store, sole and shared: many trio tasks, exact results,
watches."""

from __future__ import annotations

import time

import pytest
import trio

from fusefs.store_runner import StoreRunner
from metadata.emulation import StoreEmulation
from metadata.sqlite_store import SqliteStore
from metadata.store import Store, Transaction, decode_int64, encode_int64


def increment(tr: Transaction, counter: bytes, by: int) -> int:
    value = decode_int64(tr.get(counter)) + by
    tr.set(counter, encode_int64(value))
    return value


def test_many_tasks_count_exactly(store: Store) -> None:
    counter = b"counter"
    runner = StoreRunner(store, max_threads=16)
    results: list[int] = []

    async def worker() -> None:
        for _ in range(5):
            results.append(await runner.run(increment, counter, 1))  # arguments after the transaction

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(64):
                nursery.start_soon(worker)

    trio.run(main)
    assert decode_int64(store.transact(lambda tr: tr.get(counter))) == 320
    assert sorted(results) == list(range(1, 321))  # every committed attempt saw its own predecessor


def test_wait_watch(store: Store) -> None:
    watched = b"watched"
    runner = StoreRunner(store)

    async def main() -> tuple[bool, bool]:
        watch = await runner.run(lambda tr: tr.watch(watched))
        quiet = await runner.wait_watch(watch, 0.2)
        with trio.move_on_after(0.2):  # cancelling a wait leaves the watch usable
            await runner.wait_watch(watch)
        async with trio.open_nursery() as nursery:

            async def change() -> None:
                await trio.sleep(0.1)
                await runner.run(lambda tr: tr.set(watched, b"changed"))

            nursery.start_soon(change)
            fired = await runner.wait_watch(watch, 10.0)
        watch.cancel()
        return quiet, fired

    started = time.monotonic()
    quiet, fired = trio.run(main)
    assert quiet is False
    assert fired is True
    assert time.monotonic() - started < 10.0


def test_a_transaction_in_a_thread_ends_with_its_result_or_its_error_even_when_cancelled(tmp_path) -> None:
    """On a store that blocks (here: shared, with a commit delay), a transaction runs in a worker thread:
    its error comes back as raised, and a caller cancelled while it runs still learns the outcome (a
    cancelled caller must never be told "failed" about a transaction that committed)."""
    store = SqliteStore(str(tmp_path / "meta.db"), shared=True, emulation=StoreEmulation(commit_delay_s=0.2))
    runner = StoreRunner(store)

    def fail(tr: Transaction) -> None:
        raise LookupError("from the transaction function")

    async def main() -> tuple[int | None, bool]:
        with pytest.raises(LookupError, match="from the transaction function"):
            await runner.run(fail)
        committed = None
        with trio.move_on_after(0.05) as scope:
            committed = await runner.run(increment, b"counter", 1)
        return committed, scope.cancelled_caught

    try:
        committed, cancelled = trio.run(main)
        assert store.blocks_event_loop
        assert (committed, cancelled) == (1, False)  # the cancel came while it ran: it was not abandoned
        assert decode_int64(store.transact(lambda tr: tr.get(b"counter"))) == 1
    finally:
        store.close()


def test_a_caller_cancelled_before_its_transaction_starts_runs_nothing(tmp_path) -> None:
    store = SqliteStore(str(tmp_path / "meta.db"), shared=True)
    runner = StoreRunner(store)

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await runner.run(increment, b"counter", 1)
        assert scope.cancelled_caught

    try:
        trio.run(main)
        assert store.transact(lambda tr: tr.get(b"counter")) is None
    finally:
        store.close()
