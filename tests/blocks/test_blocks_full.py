"""A real full filesystem (a 1 MiB tmpfs): ENOSPC becomes BlockStoreFull and written chunks stay intact."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from blocks_owner import claimed_store

from blocks import BlockStoreFull, ChecksumTable

CHUNK = 64 * 1024


def test_filling_the_disk_raises_block_store_full_and_keeps_earlier_chunks(tmpfs: Callable[[str], str]) -> None:
    directory = tmpfs("1m")
    store = claimed_store([directory], CHUNK)
    rng = random.Random(11)
    written: dict[int, tuple[bytes, bytes]] = {}
    for chunk_id in range(1, 40):  # 16 chunks fill the disk: must fail well before 40
        table = ChecksumTable(CHUNK)
        data = rng.randbytes(CHUNK)
        try:
            store.write(0, chunk_id, 0, data, table)
        except BlockStoreFull as error:
            assert directory in str(error)
            failed_id, failed_table = chunk_id, table
            break
        written[chunk_id] = (data, table.to_bytes())
    else:
        pytest.fail("the 1 MiB tmpfs never filled up")
    assert 5 < len(written) < 16
    for chunk_id, (data, raw_table) in written.items():
        assert store.read(0, chunk_id, 0, CHUNK, ChecksumTable(CHUNK, raw_table)) == data
    # The failed write's table matches what partly landed, so it verifies rather than reporting corruption.
    store.read(0, failed_id, 0, CHUNK, failed_table)
    assert store.recompute(0, failed_id) == failed_table
    store.close()


def test_full_disk_during_a_write_leaves_the_rest_of_the_chunk_untouched(tmpfs: Callable[[str], str]) -> None:
    directory = tmpfs("1m")
    store = claimed_store([directory], CHUNK)
    table = ChecksumTable(CHUNK)
    first_half = random.Random(12).randbytes(CHUNK // 2)
    store.write(0, 1, 0, first_half, table)
    committed = table.to_bytes()
    Path(directory, "filler").write_bytes(bytes(1024 * 1024 - CHUNK // 2 - 8192))
    with pytest.raises(BlockStoreFull):
        store.write(0, 1, CHUNK // 2, b"\x55" * (CHUNK // 2), table)
    assert store.read(0, 1, 0, CHUNK // 2, ChecksumTable(CHUNK, committed)) == first_half
    assert store.read(0, 1, 0, CHUNK // 2, table) == first_half
    store.close()
