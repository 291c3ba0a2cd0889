from __future__ import annotations

import os
from collections import Counter

from blocks import BlockStore
from blocks.layout import FANOUT_DIRS, fanout_index, parse_chunk_name


def test_path_is_fanout_dir_then_16_hex_digits(store: BlockStore) -> None:
    path = store.path(0, 0xABC)
    subdir, name = os.path.split(os.path.relpath(path, store.directories[0]))
    assert name == "0000000000000abc.chunk"
    assert subdir == f"{fanout_index(0xABC):02x}"
    assert parse_chunk_name(name) == 0xABC


def test_sequential_and_strided_ids_spread_over_the_fanout_dirs() -> None:
    for stride in (1, 256, 4096):
        counts = Counter(fanout_index(1 + stride * n) for n in range(256 * 64))
        assert len(counts) == FANOUT_DIRS, stride
        assert max(counts.values()) < 3 * 64, stride


def test_only_canonical_chunk_names_parse() -> None:
    for name in ("0000000000000ABC.chunk", "abc.chunk", "0000000000000abc.tmp", "0000000000000000.chunk", "x"):
        assert parse_chunk_name(name) is None, name
