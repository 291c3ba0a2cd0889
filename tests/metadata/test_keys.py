"""The key layout's hand-written tuple encoding must match fdb.tuple's byte for byte, or keys written
by one version would not be found by another (and ordering would break)."""

from __future__ import annotations

import math
import random
import struct

import fdb.tuple

from metadata.keys import FsKeys, _element, scalar_element


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


def test_every_inode_in_a_key_is_8_bytes_little_endian() -> None:
    keys = FsKeys("fs")
    for ino in (1, 2**16 + 7, 2**64 - 1, 0xFF, 0xFFFF_FFFF_FFFF_FF00):
        ino8 = ino.to_bytes(8, "little")
        for key, kind, rest in [
            (keys.attr(ino), "a", ()),
            (keys.entry(ino, b"n"), "e", (b"n",)),
            (keys.xattr(ino, b"user.x"), "x", (b"user.x",)),
            (keys.inline_piece(ino, 3), "d", (3,)),
            (keys.chunk(ino, 3), "c", (3,)),
            (keys.dirty_chunk(ino, 3), "w", (3,)),
            (keys.orphan(ino), "o", ()),
        ]:
            assert fdb.tuple.unpack(key) == ("fusefs", "fs", kind, ino8, *rest)
        assert keys.orphan_ino(keys.orphan(ino)) == ino
        assert keys.dirty_chunk_of(keys.dirty_chunk(ino, 9)) == (ino, 9)
        assert _within(keys.orphan(ino), keys.orphans())
        assert not _within(keys.orphan(ino), keys.v1_orphans())
        dirty = keys.dirty_chunk(ino, 9)
        assert _within(dirty, keys.dirty_chunks()) and _within(dirty, keys.dirty_chunks_of(ino))
        assert not _within(dirty, keys.v1_dirty_chunks())
        assert not _within(dirty, keys.dirty_chunks_of(ino ^ 1))


def test_format_1_keys_fall_in_their_own_ranges_only() -> None:
    keys = FsKeys("fs")
    for ino in (0, 1, 2**40, 2**64 - 1):
        orphan = fdb.tuple.pack(("fusefs", "fs", "o", ino))
        dirty = fdb.tuple.pack(("fusefs", "fs", "w", ino, 5))
        assert _within(orphan, keys.v1_orphans()) and not _within(orphan, keys.orphans())
        assert _within(dirty, keys.v1_dirty_chunks()) and not _within(dirty, keys.dirty_chunks())
        assert keys.v1_parts(orphan) == (ino,) and keys.v1_parts(dirty) == (ino, 5)


def _within(key: bytes, begin_end: tuple[bytes, bytes]) -> bool:
    return begin_end[0] <= key < begin_end[1]


def test_hand_decoded_back_references_and_index_inodes_match_the_tuple_layer() -> None:
    """link_of and last_ino decode without fdb.tuple: every inode byte pattern (zero bytes are escaped
    in a key, 0xff and 0x01 bytes are not) and names and values with such bytes decode back."""
    keys = FsKeys("fs")
    patterns = [0, 1, 0xFF, 0x100, 2**64 - 1, 0xFF00_FF00_FF00_FF00, 0x00FF_00FF_00FF_00FF, 0x0101_FFFF_0001]
    for n, ino in enumerate(patterns):
        parent = patterns[-1 - n]
        name = bytes([0xFF, 0x01, 0x41][: n % 3 + 1])
        link = keys.link(ino, parent, name)
        _, ino8, parent8, stored_name = fdb.tuple.unpack(link[len(keys.prefix) :])
        assert keys.link_of(link) == (int.from_bytes(ino8, "little"), int.from_bytes(parent8, "little"), name)
        assert keys.link_of(link) == (ino, parent, stored_name)
        value = bytes([0, 0xFF, 1, 0][: n % 4 + 1])
        for indexed in (
            keys.xattr_value(b"user.x", value, ino),
            keys.xattr_hash(b"user.x", value, ino),
            keys.json_field(b"user.x", "a.b", (1, fdb.tuple.pack((0.5,))), ino),
        ):
            assert keys.last_ino(indexed) == ino


def test_subdirectory_names_decode_back() -> None:
    keys = FsKeys("fs")
    for parent in (0, 0xFF, 2**64 - 1, 0x0100):
        for name in (b"a", b"\xff\x01", b"long.name.tar.gz"):
            assert keys.subdirectory_name(keys.subdirectory(parent, name)) == name


def test_scalar_elements_encode_like_fdb_tuple() -> None:
    """The JSON-field index's typed values: hand-encoded, byte for byte what the tuple layer writes (the
    records of filesystems indexed before stay the ones their check derives)."""
    rng = random.Random(15)
    doubles = [struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0] for _ in range(3000)]
    values: list[bool | float | str] = [True, False, 0.0, -0.0, 1.0, -1.0, 0.1, -0.1, 5e-324, -5e-324]
    values += [1e308, -1e308, float(2**53 + 1), "", "a", "é", "a\x00b", "\U0001f600", "\x00\xff"]
    values += [d for d in doubles if math.isfinite(d)] + [rng.uniform(-1e6, 1e6) for _ in range(1000)]
    for value in values:
        assert scalar_element(value) == fdb.tuple.pack((value,)), value
