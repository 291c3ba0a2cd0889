"""Random writes, reads, punches and truncates against a bytearray model (fsx-style), seed in every message."""

from __future__ import annotations

import os
import random

import pytest
from blocks_owner import claimed_store

from blocks import CHECKSUM_BLOCK_BYTES, BlockStore, ChecksumTable

B = CHECKSUM_BLOCK_BYTES


def _random_range(rng: random.Random, chunk_size: int) -> tuple[int, int]:
    # Mostly near block boundaries and a few blocks long, so partial first/last blocks are common.
    if rng.random() < 0.5:
        offset = rng.randrange(0, chunk_size // B) * B + rng.choice([0, 1, B - 1, rng.randrange(B)])
    else:
        offset = rng.randrange(chunk_size)
    offset = min(offset, chunk_size - 1)
    length = rng.choice([1, B - 1, B, B + 1, 3 * B, rng.randrange(1, 5 * B)])
    return offset, min(length, chunk_size - offset)


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_match_a_bytearray_model(store: BlockStore, seed: int) -> None:
    rng = random.Random(seed)
    size = store.chunk_size
    model = bytearray(size)  # zeros past the file's end, as reads return
    raw_table = b""  # what the metadata layer would have committed
    chunk_id = seed + 1
    for step in range(120):
        table = ChecksumTable(size, raw_table)
        operation = rng.choices(["write", "read", "punch", "truncate"], weights=[6, 4, 1, 1])[0]
        offset, length = _random_range(rng, size)
        where = f"seed={seed} step={step} {operation}({offset}, {length})"
        if operation == "write":
            data = rng.randbytes(length)
            store.write(0, chunk_id, offset, data, table)
            model[offset : offset + length] = data
        elif operation == "read":
            assert store.read(0, chunk_id, offset, length, table) == model[offset : offset + length], where
            if os.path.exists(store.path(0, chunk_id)):  # without a table a missing file is ChunkMissing
                assert store.read(0, chunk_id, offset, length, None) == model[offset : offset + length], where
        elif operation == "punch":
            store.punch(0, chunk_id, offset, length, table)
            model[offset : offset + length] = bytes(length)
        else:
            store.truncate(0, chunk_id, offset, table)
            model[offset:] = bytes(size - offset)
        raw_table = table.to_bytes()
        assert store.recompute(0, chunk_id) == table, where
    assert store.read(0, chunk_id, 0, size, ChecksumTable(size, raw_table)) == model, f"seed={seed}"


def test_holes_read_as_zeros_and_take_no_space(tmp_path: object, block_dir: str) -> None:
    chunk_size = 4 * 1024 * 1024
    store = claimed_store([block_dir], chunk_size)
    table = ChecksumTable(chunk_size)
    store.write(0, 1, chunk_size - B, b"\x01" * B, table)
    status = os.stat(store.path(0, 1))
    assert status.st_size == chunk_size
    assert status.st_blocks * 512 <= 2 * B  # only the written block is allocated
    assert store.read(0, 1, 0, 2 * B, table) == bytes(2 * B)
    assert store.read(0, 1, chunk_size - B - 1, 2, table) == b"\x00\x01"
    store.close()


def test_reads_past_the_file_end_are_zero_filled(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    store.write(0, 1, 0, b"abc", table)
    assert os.path.getsize(store.path(0, 1)) == 3
    assert store.read(0, 1, 1, 3 * B, table) == b"bc" + bytes(3 * B - 2)
    assert store.read(0, 1, 2 * B, 5, table) == bytes(5)


def test_ranges_outside_the_chunk_are_refused(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    with pytest.raises(ValueError):
        store.write(0, 1, store.chunk_size - 1, b"ab", table)
    with pytest.raises(ValueError):
        store.read(0, 1, -1, 1, table)
    with pytest.raises(ValueError):
        store.read(0, 1, 0, 1, ChecksumTable(2 * store.chunk_size))
    with pytest.raises(IndexError):
        store.path(-1, 1)


def test_a_directory_index_the_store_does_not_have_holds_no_file(store: BlockStore) -> None:
    """A host with fewer block directories than the records name (a data tier's cache directory): the
    chunk is not here, so deleting it does nothing and reading it is a hole or a missing chunk."""
    from blocks import ChunkMissing

    assert store.holds(0) and not store.holds(1) and not store.holds(-1)
    store.delete(1, 7)  # nothing to delete here
    assert store.read(1, 7, 0, 10, ChecksumTable(store.chunk_size)) == bytes(10)  # never written
    table = ChecksumTable(store.chunk_size)
    table.set(0, 1)
    with pytest.raises(ChunkMissing, match="block directory 1, which this host does not have"):
        store.read(1, 7, 0, 10, table)
