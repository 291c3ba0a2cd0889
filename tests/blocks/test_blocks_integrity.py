"""Corruption and loss are reported, never returned as data."""

from __future__ import annotations

import os
import random

import pytest

from blocks import CHECKSUM_BLOCK_BYTES, BlockStore, ChecksumMismatch, ChecksumTable, ChunkMissing

B = CHECKSUM_BLOCK_BYTES


def _flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        value = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([value ^ 0x40]))


def test_flipped_byte_is_a_checksum_mismatch_naming_chunk_and_block(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    data = random.Random(3).randbytes(8 * B)
    store.write(0, 42, 0, data, table)
    path = store.path(0, 42)
    _flip_byte(path, 3 * B + 17)
    with pytest.raises(ChecksumMismatch) as caught:
        store.read(0, 42, 3 * B + 100, 10, table)  # touches block 3 but not the flipped byte
    error = caught.value
    assert (error.chunk_id, error.block_index, error.path) == (42, 3, path)
    assert "42" in str(error) and "block 3" in str(error) and path in str(error)
    # Ranges that do not touch block 3 still read.
    assert store.read(0, 42, 0, 3 * B, table) == data[: 3 * B]
    assert store.read(0, 42, 4 * B, 4 * B, table) == data[4 * B :]


def test_lost_tail_is_a_checksum_mismatch(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    store.write(0, 1, 0, b"\x07" * (2 * B), table)
    os.truncate(store.path(0, 1), B + 1)
    with pytest.raises(ChecksumMismatch) as caught:
        store.read(0, 1, 0, 2 * B, table)
    assert caught.value.block_index == 1


def test_missing_chunk_with_data_is_chunk_missing(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    store.write(0, 9, B, b"x" * 10, table)
    os.unlink(store.path(0, 9))
    store.close()  # a cached descriptor would still reach the unlinked file, as after a restart it cannot
    with pytest.raises(ChunkMissing) as caught:
        store.read(0, 9, B, 10, table)
    assert caught.value.chunk_id == 9 and store.path(0, 9) in str(caught.value)
    with pytest.raises(ChunkMissing):
        store.read(0, 9, 0, 1, None)
    # Blocks the table says were never written read as zeros even without a file.
    assert store.read(0, 9, 2 * B, 3, table) == bytes(3)
    with pytest.raises(ChunkMissing):
        store.punch(0, 9, B, 1, table)
    with pytest.raises(ChunkMissing):
        store.truncate(0, 9, 2 * B, table)


def test_never_written_chunk_reads_as_zeros(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    assert store.read(0, 5, 0, 3 * B, table) == bytes(3 * B)
    store.truncate(0, 5, 0, table)
    store.punch(0, 5, 0, B, table)
    store.fsync(0, 5)
    assert not os.path.exists(store.path(0, 5))
