"""Isolation, conflicts and the retry loop: the same behaviour on every backend."""

from __future__ import annotations

import threading

import pytest
from conformance_helpers import key, put, read

from metadata.store import (
    CommitUnknownResult,
    RetryLimitReached,
    Store,
    StoreError,
    TransactionConflict,
    TransactionTimedOut,
    decode_int64,
    encode_int64,
)


def test_snapshot_read_does_not_conflict(store: Store, prefix: bytes) -> None:
    put(store, [(key(prefix, "watched"), b"0")])
    reader = store.begin()
    assert reader.get(key(prefix, "watched"), snapshot=True) == b"0"
    reader.set(key(prefix, "other"), b"x")

    store.transact(lambda tr: tr.set(key(prefix, "watched"), b"1"))

    reader.commit()  # the snapshot read put nothing in the read conflict set
    assert read(store, key(prefix, "other")) == b"x"


def test_serializable_read_conflicts(store: Store, prefix: bytes) -> None:
    put(store, [(key(prefix, "watched"), b"0")])
    reader = store.begin()
    assert reader.get(key(prefix, "watched")) == b"0"
    reader.set(key(prefix, "other"), b"x")

    store.transact(lambda tr: tr.set(key(prefix, "watched"), b"1"))

    with pytest.raises(TransactionConflict):
        reader.commit()
    reader.cancel()
    assert read(store, key(prefix, "other")) is None


def test_serializable_get_many_conflicts_on_any_of_its_keys(store: Store, prefix: bytes) -> None:
    keys = [key(prefix, "many", i) for i in range(300)]
    put(store, [(k, b"0") for k in keys])
    reader = store.begin()
    assert reader.get_many(keys) == [b"0"] * 300
    reader.set(key(prefix, "other"), b"x")

    store.transact(lambda tr: tr.set(keys[299], b"1"))

    with pytest.raises(TransactionConflict):
        reader.commit()
    reader.cancel()


def test_serializable_range_read_conflicts(store: Store, prefix: bytes) -> None:
    reader = store.begin()
    assert reader.get_range(key(prefix, "dir"), key(prefix, "dir") + b"\xff") == []
    reader.set(key(prefix, "listed"), b"empty")

    store.transact(lambda tr: tr.set(key(prefix, "dir", "new-entry"), b"1"))  # a phantom

    with pytest.raises(TransactionConflict):
        reader.commit()
    reader.cancel()


def test_added_read_conflict_key_conflicts(store: Store, prefix: bytes) -> None:
    tr = store.begin()
    tr.get(key(prefix, "unrelated"))  # gives the transaction its read version
    tr.add_read_conflict_key(key(prefix, "guard"))
    tr.set(key(prefix, "result"), b"1")

    store.transact(lambda other: other.set(key(prefix, "guard"), b"changed"))

    with pytest.raises(TransactionConflict):
        tr.commit()
    tr.cancel()


def test_write_skew_is_prevented(store: Store, prefix: bytes) -> None:
    """Each transaction reads the key the other writes: only the first to commit succeeds."""
    a, b = key(prefix, "a"), key(prefix, "b")
    put(store, [(a, b"0"), (b, b"0")])
    first, second = store.begin(), store.begin()
    assert first.get(a) == b"0"
    assert second.get(b) == b"0"
    first.set(b, b"first")
    second.set(a, b"second")

    first.commit()
    with pytest.raises(TransactionConflict):
        second.commit()
    second.cancel()
    assert read(store, a) == b"0"
    assert read(store, b) == b"first"


def test_atomic_ops_do_not_conflict(store: Store, prefix: bytes) -> None:
    counter = key(prefix, "counter")
    first, second = store.begin(), store.begin()
    first.get(key(prefix, "x"))
    second.get(key(prefix, "y"))
    first.add(counter, 2)
    second.add(counter, 3)
    first.commit()
    second.commit()  # atomic adds add no read conflict
    assert decode_int64(read(store, counter)) == 5


def test_concurrent_read_modify_write_counts_exactly(store: Store, prefix: bytes) -> None:
    counter = key(prefix, "counter")
    threads_n, per_thread = 2, 100
    errors: list[BaseException] = []

    def increment(tr):  # type: ignore[no-untyped-def]
        tr.set(counter, encode_int64(decode_int64(tr.get(counter)) + 1))

    def worker() -> None:
        try:
            for _ in range(per_thread):
                store.transact(increment)
        except BaseException as error:  # noqa: BLE001 -- reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert decode_int64(read(store, counter)) == threads_n * per_thread


def test_retry_limit_reached(store: Store, prefix: bytes) -> None:
    calls: list[int] = []

    def always_conflicts(tr):  # type: ignore[no-untyped-def]
        calls.append(1)
        tr.set(key(prefix, "never"), b"1")
        raise TransactionConflict("simulated")

    with pytest.raises(RetryLimitReached):
        store.transact(always_conflicts, retry_limit=3)
    assert len(calls) == 4  # the first attempt and 3 retries
    assert read(store, key(prefix, "never")) is None


def test_timeout_ends_retrying(store: Store, prefix: bytes) -> None:
    def always_conflicts(tr):  # type: ignore[no-untyped-def]
        tr.get(key(prefix, "x"))
        raise TransactionConflict("simulated")

    with pytest.raises(TransactionTimedOut):
        store.transact(always_conflicts, retry_limit=1_000_000, timeout_s=0.3)


def test_operation_id_is_stable_across_retries(store: Store, prefix: bytes) -> None:
    seen: list[bytes] = []

    def conflicts_twice(tr):  # type: ignore[no-untyped-def]
        seen.append(tr.operation_id)
        tr.set(key(prefix, "done"), b"1")
        if len(seen) < 3:
            raise TransactionConflict("simulated")
        return "ok"

    assert store.transact(conflicts_twice) == "ok"
    assert len(seen) == 3
    assert len(set(seen)) == 1 and len(seen[0]) == 16
    assert read(store, key(prefix, "done")) == b"1"

    other: list[bytes] = []
    store.transact(lambda tr: other.append(tr.operation_id))
    assert other[0] != seen[0]  # a new id for every transact call


def test_maybe_committed_after_commit_unknown_result(store: Store, prefix: bytes) -> None:
    flags: list[bool] = []

    def unknown_once(tr):  # type: ignore[no-untyped-def]
        flags.append(tr.maybe_committed)
        if len(flags) == 1:
            raise CommitUnknownResult("simulated")

    store.transact(unknown_once)
    assert flags == [False, True]


def test_other_exceptions_are_not_retried(store: Store, prefix: bytes) -> None:
    calls: list[int] = []

    def fails(tr):  # type: ignore[no-untyped-def]
        calls.append(1)
        tr.set(key(prefix, "half-done"), b"1")
        raise ValueError("application error")

    with pytest.raises(ValueError, match="application error"):
        store.transact(fails)
    assert calls == [1]
    assert read(store, key(prefix, "half-done")) is None


def test_commit_twice_is_an_error(store: Store, prefix: bytes) -> None:
    tr = store.begin()
    tr.set(key(prefix, "once"), b"1")
    tr.commit()
    with pytest.raises(StoreError):
        tr.commit()
    tr.cancel()  # a no-op after commit
    assert read(store, key(prefix, "once")) == b"1"


def test_read_only_transaction_commits(store: Store, prefix: bytes) -> None:
    tr = store.begin()
    assert tr.get(key(prefix, "nothing")) is None
    store.transact(lambda other: other.set(key(prefix, "nothing"), b"1"))
    tr.commit()  # nothing written: nothing to conflict with, as in FoundationDB
