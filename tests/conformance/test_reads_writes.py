"""Key order, range reads and read-your-writes: the same results on every backend."""

from __future__ import annotations

import functools
import random
import uuid

import fdb.tuple
from conformance_helpers import key, put, read, read_range

from metadata.store import Store, decode_int64, encode_int64

TUPLES = [
    (-(2**64),),
    (-(2**40),),
    (-300,),
    (-1,),
    (0,),
    (1,),
    (255,),
    (256,),
    (2**40,),
    (2**64,),
    (None,),
    (b"",),
    (b"\x00",),
    (b"\x00\x00",),
    (b"a",),
    (b"a\x00",),
    (b"ab",),
    (b"b",),
    (b"\xff",),
    ("",),
    ("a",),
    ("ab",),
    ("é",),
    ("\U0001f600",),
    (("nested", 1),),
    (("nested", 1, None),),
    (("nested", 2),),
    (1, "a"),
    (1, "a", 0),
    (1, "b"),
    (uuid.UUID(int=1),),
    (False,),
    (True,),
    (1.5,),
]


def test_tuple_keys_sort_like_tuples(store: Store, prefix: bytes) -> None:
    shuffled = TUPLES[:]
    random.Random(7).shuffle(shuffled)
    put(store, [(key(prefix, *t), repr(t).encode()) for t in shuffled])

    rows = read_range(store, prefix, prefix + b"\xff")

    expected = sorted(TUPLES, key=functools.cmp_to_key(fdb.tuple.compare))
    assert [fdb.tuple.unpack(k, prefix_len=len(prefix)) for k, _ in rows] == [
        fdb.tuple.unpack(fdb.tuple.pack(t)) for t in expected
    ]
    assert [v for _, v in rows] == [repr(t).encode() for t in expected]
    assert [k for k, _ in rows] == sorted(k for k, _ in rows)  # byte order is tuple order


def test_get_missing_and_present(store: Store, prefix: bytes) -> None:
    put(store, [(key(prefix, "a"), b"1"), (key(prefix, "empty"), b"")])
    assert read(store, key(prefix, "a")) == b"1"
    assert read(store, key(prefix, "empty")) == b""  # an empty value is present, not missing
    assert read(store, key(prefix, "missing")) is None


def _ten(store: Store, prefix: bytes) -> list[tuple[bytes, bytes]]:
    items = [(key(prefix, "r", i), str(i).encode()) for i in range(10)]
    put(store, items)
    return items


def test_get_range_limit_and_reverse(store: Store, prefix: bytes) -> None:
    items = _ten(store, prefix)
    begin, end = key(prefix, "r", 2), key(prefix, "r", 8)  # keys 2..7

    assert read_range(store, begin, end) == items[2:8]
    assert read_range(store, begin, end, limit=3) == items[2:5]
    assert read_range(store, begin, end, reverse=True) == items[2:8][::-1]
    assert read_range(store, begin, end, limit=3, reverse=True) == items[5:8][::-1]
    assert read_range(store, begin, end, limit=100) == items[2:8]
    assert read_range(store, end, begin) == []  # begin >= end: empty
    assert read_range(store, begin, begin) == []


def test_iter_range_is_lazy_and_matches_get_range(store: Store, prefix: bytes) -> None:
    items = _ten(store, prefix)

    def check(tr):  # type: ignore[no-untyped-def]
        it = tr.iter_range(prefix, prefix + b"\xff")
        assert iter(it) is it  # an iterator, not a list
        assert next(it) == items[0]
        assert list(it) == items[1:]
        assert list(tr.iter_range(prefix, prefix + b"\xff", limit=4, reverse=True)) == items[6:][::-1]

    store.transact(check)


def test_iter_range_streams_more_than_ten_thousand_keys(store: Store, prefix: bytes) -> None:
    count = 12_345
    for start in range(0, count, 5_000):
        put(store, [(key(prefix, "s", i), b"v%d" % i) for i in range(start, min(start + 5_000, count))])
    begin, end = key(prefix, "s"), key(prefix, "s") + b"\xff"

    def scan_forward(tr):  # type: ignore[no-untyped-def]
        seen = 0
        for n, (k, v) in enumerate(tr.iter_range(begin, end)):
            assert fdb.tuple.unpack(k, prefix_len=len(prefix)) == ("s", n)
            assert v == b"v%d" % n
            seen += 1
        return seen

    def scan_reverse_limited(tr):  # type: ignore[no-untyped-def]
        return [k for k, _ in tr.iter_range(begin, end, reverse=True, limit=11_000)]

    assert store.transact(scan_forward) == count
    keys = store.transact(scan_reverse_limited)
    assert len(keys) == 11_000
    assert keys[0] == key(prefix, "s", count - 1)
    assert keys[-1] == key(prefix, "s", count - 11_000)


def test_read_your_writes(store: Store, prefix: bytes) -> None:
    put(store, [(key(prefix, "k", i), b"old") for i in range(6)])

    def fn(tr):  # type: ignore[no-untyped-def]
        tr.set(key(prefix, "k", 1), b"new")
        tr.clear(key(prefix, "k", 2))
        tr.set(key(prefix, "k", 10), b"added")
        assert tr.get(key(prefix, "k", 1)) == b"new"
        assert tr.get(key(prefix, "k", 2)) is None
        assert tr.get(key(prefix, "k", 10)) == b"added"
        rows = tr.get_range(key(prefix, "k"), key(prefix, "k") + b"\xff")
        assert [fdb.tuple.unpack(k, prefix_len=len(prefix))[1] for k, _ in rows] == [0, 1, 3, 4, 5, 10]
        assert rows[1][1] == b"new"

        # clear_range, then write inside the cleared range: reads see only the new write
        tr.clear_range(key(prefix, "k", 1), key(prefix, "k", 5))
        tr.set(key(prefix, "k", 3), b"again")
        assert tr.get(key(prefix, "k", 4)) is None
        rows = tr.get_range(key(prefix, "k"), key(prefix, "k") + b"\xff")
        assert rows == [
            (key(prefix, "k", 0), b"old"),
            (key(prefix, "k", 3), b"again"),
            (key(prefix, "k", 5), b"old"),
            (key(prefix, "k", 10), b"added"),
        ]
        reverse = tr.get_range(key(prefix, "k"), key(prefix, "k") + b"\xff", reverse=True, limit=2)
        assert reverse == [(key(prefix, "k", 10), b"added"), (key(prefix, "k", 5), b"old")]

    store.transact(fn)
    assert read_range(store, key(prefix, "k"), key(prefix, "k") + b"\xff") == [
        (key(prefix, "k", 0), b"old"),
        (key(prefix, "k", 3), b"again"),
        (key(prefix, "k", 5), b"old"),
        (key(prefix, "k", 10), b"added"),
    ]


def test_clear_range_is_half_open(store: Store, prefix: bytes) -> None:
    items = _ten(store, prefix)
    store.transact(lambda tr: tr.clear_range(key(prefix, "r", 3), key(prefix, "r", 6)))
    assert read_range(store, prefix, prefix + b"\xff") == items[:3] + items[6:]


def test_cancelled_transaction_writes_nothing(store: Store, prefix: bytes) -> None:
    tr = store.begin()
    tr.set(key(prefix, "x"), b"1")
    tr.cancel()
    tr.cancel()  # safe twice
    assert read(store, key(prefix, "x")) is None


def test_snapshot_reads_see_own_writes(store: Store, prefix: bytes) -> None:
    def fn(tr):  # type: ignore[no-untyped-def]
        tr.set(key(prefix, "s"), b"mine")
        assert tr.get(key(prefix, "s"), snapshot=True) == b"mine"
        assert tr.get_range(prefix, prefix + b"\xff", snapshot=True) == [(key(prefix, "s"), b"mine")]

    store.transact(fn)


def test_get_many_returns_values_in_key_order_given(store: Store, prefix: bytes) -> None:
    keys = [key(prefix, "many", i) for i in range(50)]
    put(store, [(k, b"v%d" % i) for i, k in enumerate(keys) if i % 3])
    wanted = list(reversed(keys)) + [key(prefix, "absent")]

    def read_many(tr):  # type: ignore[no-untyped-def]
        tr.set(keys[0], b"own write")  # read-your-writes holds for batched reads too
        return tr.get_many(wanted, snapshot=True), tr.get_many(wanted)

    snapshot_values, values = store.transact(read_many)
    expected = [b"own write" if k == keys[0] else (b"v%d" % keys.index(k) if keys.index(k) % 3 else None)
                for k in reversed(keys)] + [None]
    assert snapshot_values == expected
    assert values == expected


def test_get_many_of_hundreds_of_keys_sees_clears_atomics_and_repeats(store: Store, prefix: bytes) -> None:
    keys = [key(prefix, "batch", i) for i in range(600)]  # more than one statement's worth on SQLite
    counter = key(prefix, "batch-counter")
    put(store, [(k, b"%d" % i) for i, k in enumerate(keys)] + [(counter, encode_int64(5))])

    def read_many(tr):  # type: ignore[no-untyped-def]
        tr.clear_range(keys[10], keys[20])
        tr.add(counter, 2)
        return tr.get_many([*keys, keys[3], counter])

    values = store.transact(read_many)
    assert values[:10] == [b"%d" % i for i in range(10)]
    assert values[10:20] == [None] * 10
    assert values[20:600] == [b"%d" % i for i in range(20, 600)]
    assert values[600] == b"3"
    assert decode_int64(values[601]) == 7


def test_get_ranges_returns_each_range_whole_with_own_writes(store: Store, prefix: bytes) -> None:
    put(store, [(key(prefix, "ranges", r, i), b"%d.%d" % (r, i)) for r in range(3) for i in range(r * 5)])
    ranges = [(key(prefix, "ranges", r), key(prefix, "ranges", r) + b"\xff") for r in range(4)]

    def read_ranges(tr):  # type: ignore[no-untyped-def]
        tr.set(key(prefix, "ranges", 3, 0), b"own write")
        tr.clear(key(prefix, "ranges", 2, 0))
        return tr.get_ranges(ranges, snapshot=True)

    found = store.transact(read_ranges)
    assert [[value for _, value in rows] for rows in found] == [
        [],
        [b"1.%d" % i for i in range(5)],
        [b"2.%d" % i for i in range(1, 10)],
        [b"own write"],
    ]
    assert store.transact(lambda tr: tr.get_ranges([])) == []
