"""Atomic operations, versionstamps, FoundationDB's size limits and watches on every backend."""

from __future__ import annotations

import functools
import threading
import time

import fdb.tuple
import pytest
from conformance_helpers import key, put, read, read_range, stamped_key

from metadata.store import (
    MAX_KEY_BYTES,
    MAX_TRANSACTION_BYTES,
    MAX_VALUE_BYTES,
    KeyTooLarge,
    Store,
    TransactionTooLarge,
    ValueTooLarge,
    decode_int64,
    encode_int64,
)


def test_atomic_add(store: Store, prefix: bytes) -> None:
    counter = key(prefix, "counter")
    store.transact(lambda tr: tr.add(counter, 5))  # an absent key counts as 0
    assert decode_int64(read(store, counter)) == 5
    store.transact(lambda tr: tr.add(counter, -8))
    assert decode_int64(read(store, counter)) == -3
    assert read(store, counter) == encode_int64(-3)  # 8-byte little-endian two's complement

    def add_twice_then_read(tr):  # type: ignore[no-untyped-def]
        tr.add(counter, 10)
        tr.add(counter, -1)
        return decode_int64(tr.get(counter))  # read-your-writes through atomics

    assert store.transact(add_twice_then_read) == 6
    assert decode_int64(read(store, counter)) == 6

    def set_then_add(tr):  # type: ignore[no-untyped-def]
        tr.set(counter, encode_int64(100))
        tr.add(counter, 1)

    store.transact(set_then_add)
    assert decode_int64(read(store, counter)) == 101


def test_atomic_max(store: Store, prefix: bytes) -> None:
    high = key(prefix, "high")
    store.transact(lambda tr: tr.max(high, 7))  # absent: becomes the operand
    assert decode_int64(read(store, high)) == 7
    store.transact(lambda tr: tr.max(high, 3))
    assert decode_int64(read(store, high)) == 7
    store.transact(lambda tr: tr.max(high, 2**40))
    assert decode_int64(read(store, high)) == 2**40

    def max_in_transaction(tr):  # type: ignore[no-untyped-def]
        tr.max(high, 2**41)
        tr.max(high, 5)
        return decode_int64(tr.get(high))

    assert store.transact(max_in_transaction) == 2**41


def test_versionstamped_keys_sort_in_commit_order(store: Store, prefix: bytes) -> None:
    if hasattr(fdb, "impl"):  # libfdb_c loaded: the binding can pack versionstamps itself
        assert stamped_key(prefix, "log", user_version=3) == fdb.tuple.pack_with_versionstamp(
            ("log", fdb.tuple.Versionstamp.incomplete(3)), prefix=prefix
        )
    def append(tr, value):  # type: ignore[no-untyped-def]
        tr.set_versionstamped_key(stamped_key(prefix, "log"), value)

    for i in range(5):
        store.transact(functools.partial(append, value=b"%d" % i))

    def two_in_one(tr):  # type: ignore[no-untyped-def]
        for user_version in (1, 0):
            stamped = stamped_key(prefix, "log", user_version=user_version)
            tr.set_versionstamped_key(stamped, b"5.%d" % user_version)

    store.transact(two_in_one)

    rows = read_range(store, key(prefix, "log"), key(prefix, "log") + b"\xff")
    assert [v for _, v in rows] == [b"0", b"1", b"2", b"3", b"4", b"5.0", b"5.1"]
    stamps = [fdb.tuple.unpack(k, prefix_len=len(prefix))[1] for k, _ in rows]
    assert all(isinstance(s, fdb.tuple.Versionstamp) and s.is_complete() for s in stamps)
    assert stamps == sorted(stamps)
    assert len({s.tr_version for s in stamps}) == 6  # one commit version per transaction
    assert stamps[5].tr_version == stamps[6].tr_version
    assert (stamps[5].user_version, stamps[6].user_version) == (0, 1)


def test_key_too_large(store: Store, prefix: bytes) -> None:
    tr = store.begin()
    tr.set(b"k" * MAX_KEY_BYTES, b"fits")  # exactly at the limit is allowed (not committed)
    with pytest.raises(KeyTooLarge):
        tr.set(b"k" * (MAX_KEY_BYTES + 1), b"v")
    with pytest.raises(KeyTooLarge):
        tr.clear(b"k" * (MAX_KEY_BYTES + 1))
    with pytest.raises(KeyTooLarge):
        tr.add(b"k" * (MAX_KEY_BYTES + 1), 1)
    tr.cancel()


def test_value_too_large(store: Store, prefix: bytes) -> None:
    big = key(prefix, "big")
    store.transact(lambda tr: tr.set(big, b"v" * MAX_VALUE_BYTES))
    assert len(read(store, big) or b"") == MAX_VALUE_BYTES
    tr = store.begin()
    with pytest.raises(ValueTooLarge):
        tr.set(big, b"v" * (MAX_VALUE_BYTES + 1))
    tr.cancel()


def test_transaction_too_large(store: Store, prefix: bytes) -> None:
    value = b"v" * MAX_VALUE_BYTES
    count = MAX_TRANSACTION_BYTES // MAX_VALUE_BYTES + 10  # ~11 MB of writes
    calls: list[int] = []

    def write_too_much(tr):  # type: ignore[no-untyped-def]
        calls.append(1)
        for i in range(count):
            tr.set(key(prefix, "bulk", i), value)

    with pytest.raises(TransactionTooLarge):
        store.transact(write_too_much)
    assert calls == [1]  # not retryable
    assert read(store, key(prefix, "bulk", 0)) is None


def test_watch_fires_after_another_transaction_changes_the_key(store: Store, prefix: bytes) -> None:
    watched = key(prefix, "watched")
    put(store, [(watched, b"before")])

    def get_and_watch(tr):  # type: ignore[no-untyped-def]
        return tr.get(watched), tr.watch(watched)

    value, watch = store.transact(get_and_watch)  # a read-only transaction, as FDB's get_and_watch
    assert value == b"before"
    assert watch.wait(0.2) is False  # nothing changed yet

    changer = threading.Timer(0.1, lambda: store.transact(lambda tr: tr.set(watched, b"after")))
    started = time.monotonic()
    changer.start()
    try:
        assert watch.wait(10.0) is True
    finally:
        changer.join()
    assert time.monotonic() - started < 10.0


def test_watch_times_out_when_nothing_changes(store: Store, prefix: bytes) -> None:
    watched = key(prefix, "quiet")
    store.transact(lambda tr: tr.set(watched, b"1"))
    watch = store.transact(lambda tr: tr.watch(watched))
    store.transact(lambda tr: tr.set(key(prefix, "elsewhere"), b"1"))  # a write to another key
    started = time.monotonic()
    assert watch.wait(0.3) is False
    assert time.monotonic() - started >= 0.25
    watch.cancel()


def test_watch_on_a_key_set_by_the_watching_transaction(store: Store, prefix: bytes) -> None:
    watched = key(prefix, "mine")

    def set_and_watch(tr):  # type: ignore[no-untyped-def]
        tr.set(watched, b"1")
        return tr.watch(watched)

    watch = store.transact(set_and_watch)
    assert watch.wait(0.2) is False  # its own write is the initial value
    store.transact(lambda tr: tr.clear(watched))
    assert watch.wait(10.0) is True
