"""The key layout's hand-written tuple encoding must match fdb.tuple's byte for byte, or keys written
by one version would not be found by another (and ordering would break)."""

from __future__ import annotations

import random

import fdb.tuple

from metadata.keys import _element


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
