"""Large aligned writes bypass the page cache (O_DIRECT, ``BlockStore._write_direct``): same bytes, same
checksums, reads stay coherent with what was cached before, a full disk is BlockStoreFull, and a
filesystem that refuses O_DIRECT (a real ramfs) gets the same data through the page cache."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from blocks_owner import claimed_store

from blocks import BlockStore, BlockStoreFull, ChecksumTable
from blocks.store import DIRECT_WRITE_MIN_BYTES

CHUNK = 4 * DIRECT_WRITE_MIN_BYTES


def _store(directory: str) -> BlockStore:
    return claimed_store([directory], CHUNK)


@pytest.mark.parametrize(
    "offset", [0, DIRECT_WRITE_MIN_BYTES, 100], ids=["aligned", "aligned-later", "unaligned"]
)
def test_large_write_reads_back_with_its_checksums(block_dir: str, offset: int) -> None:
    store = _store(block_dir)
    data = random.Random(offset).randbytes(2 * DIRECT_WRITE_MIN_BYTES)
    table = ChecksumTable(CHUNK)
    store.write(0, 1, offset, data, table)
    assert store.read(0, 1, offset, len(data), table) == data
    assert store.read(0, 1, 0, offset, table) == bytes(offset)
    assert store.recompute(0, 1) == table
    store.close()


def test_direct_overwrite_replaces_what_a_read_had_cached(block_dir: str) -> None:
    store = _store(block_dir)
    rng = random.Random(3)
    table = ChecksumTable(CHUNK)
    store.write(0, 1, 0, rng.randbytes(100), table)  # small: through the page cache
    store.write(0, 1, 4096, rng.randbytes(CHUNK - 4096), table)
    before = store.read(0, 1, 0, CHUNK, table)  # now cached
    newer = rng.randbytes(CHUNK)
    store.write(0, 1, 0, newer, table)
    assert before != newer
    assert store.read(0, 1, 0, CHUNK, table) == newer
    assert Path(store.path(0, 1)).read_bytes() == newer
    store.close()


def test_full_disk_during_a_direct_write_is_block_store_full(tmpfs: Callable[[str], str]) -> None:
    directory = tmpfs("2m")
    store = _store(directory)
    Path(directory, "filler").write_bytes(bytes(2 * 1024 * 1024 - DIRECT_WRITE_MIN_BYTES))
    table = ChecksumTable(CHUNK)
    with pytest.raises(BlockStoreFull) as raised:
        store.write(0, 1, 0, random.Random(4).randbytes(CHUNK), table)
    assert directory in str(raised.value)
    assert store.recompute(0, 1) == table  # what partly landed, so it verifies rather than being corrupt
    store.close()


def test_a_filesystem_refusing_o_direct_gets_the_data_through_the_page_cache(
    ramfs: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(ramfs)
    rng = random.Random(5)
    caplog.set_level(logging.INFO, logger="blocks.store")
    for chunk_id in (1, 2):
        data = rng.randbytes(CHUNK)
        table = ChecksumTable(CHUNK)
        store.write(0, chunk_id, 0, data, table)
        assert store.read(0, chunk_id, 0, CHUNK, table) == data
        assert store.recompute(0, chunk_id) == table
    refusals = [r.getMessage() for r in caplog.records if "does not take O_DIRECT" in r.getMessage()]
    assert refusals == [
        f"block directory {ramfs} does not take O_DIRECT: large writes go through the page cache"
    ]
    store.close()
