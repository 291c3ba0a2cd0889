"""The key layout's hand-written tuple encoding must match fdb.tuple's byte for byte, or keys written
by one version would not be found by another (and ordering would break)."""

from __future__ import annotations

import random

import fdb.tuple

from metadata.keys import FsKeys, _element


def test_elements_encode_like_fdb_tuple() -> None:
    rng = random.Random(7)
    samples: list[str | bytes | int] = [
        0,
        1,
        255,
        256,
        2**63,
        2**64 - 1,
        2**64,
        -1,
        -(2**40),
        "",
        "a\0b",
        b"",
        b"\0",
        b"\0\xff\0",
        "fusefs",
        "é",
    ]
    samples += [rng.randrange(2**64) for _ in range(500)]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(20))) for _ in range(500)]
    for value in samples:
        assert _element(value) == fdb.tuple.pack((value,)), value


def test_keys_sort_like_their_tuples() -> None:
    rng = random.Random(8)
    values = [
        (rng.randrange(2**40), bytes(rng.randrange(3) for _ in range(rng.randrange(4)))) for _ in range(300)
    ]
    encoded = sorted(values, key=lambda v: _element(v[0]) + _element(v[1]))
    assert encoded == sorted(values)


def test_whole_filesystem_ranges_hold_their_keys_and_keys_decode_back():
    keys = FsKeys("fs")
    ino, parent, name = 2**40 + 3, 7, b"a\x00name"
    cases = [
        (keys.attrs(), keys.attr(ino), lambda key: keys.attr_ino(key) == ino),
        (keys.all_entries(), keys.entry(parent, name), lambda key: keys.entry_of(key) == (parent, name)),
        (keys.all_xattrs(), keys.xattr(ino, b"user.x"), lambda key: keys.xattr_of(key) == (ino, b"user.x")),
        (keys.all_inline_pieces(), keys.inline_piece(ino, 4), lambda key: keys.data_key_of(key) == (ino, 4)),
        (keys.all_chunks(), keys.chunk(ino, 9), lambda key: keys.data_key_of(key) == (ino, 9)),
        (keys.chunk_owners(), keys.chunk_owner(12345), lambda key: keys.chunk_owner_id(key) == 12345),
        (keys.all_counters(), keys.counter("bytes", 3), lambda key: keys.counter_of(key) == ("bytes", 3)),
    ]
    for (begin, end), key, decodes in cases:
        assert begin <= key < end and decodes(key)
        # No other kind of record falls in the range (the config key shares the first letter of chunks).
        others = [k for (_, k, _) in cases if k != key] + [
            keys.config(),
            keys.orphan(ino),
            keys.id_pool("inode"),
        ]
        assert not [other for other in others if begin <= other < end]
