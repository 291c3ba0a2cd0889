"""truncate, punch, delete, fsync, recompute and the chunk listing used by garbage collection."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from blocks_owner import claimed_store

import blocks.directories
import blocks.fileio
from blocks import CHECKSUM_BLOCK_BYTES, ZERO_BLOCK_CRC, BlockStore, ChecksumTable, block_checksums
from blocks.layout import fanout_index

B = CHECKSUM_BLOCK_BYTES


def test_truncate_shrinks_never_grows_and_recomputes_the_partial_block(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    data = random.Random(5).randbytes(6 * B)
    store.write(0, 1, 0, data, table)
    store.truncate(0, 1, 2 * B + 10, table)
    assert os.path.getsize(store.path(0, 1)) == 2 * B + 10
    assert table.get(2) == block_checksums(data[2 * B : 2 * B + 10])[0]
    assert all(table.get(index) == ZERO_BLOCK_CRC for index in range(3, len(table)))
    assert store.read(0, 1, 0, 4 * B, table) == data[: 2 * B + 10] + bytes(2 * B - 10)
    store.truncate(0, 1, 5 * B, table)
    assert os.path.getsize(store.path(0, 1)) == 2 * B + 10
    assert store.recompute(0, 1) == table


def test_punch_frees_space_reads_zeros_and_keeps_the_size(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    data = random.Random(6).randbytes(32 * B)
    store.write(0, 1, 0, data, table)
    store.fsync(0, 1)  # allocate (no delayed allocation), so freeing shows in st_blocks
    before = os.stat(store.path(0, 1)).st_blocks
    store.punch(0, 1, B + 1, 20 * B, table)
    status = os.stat(store.path(0, 1))
    assert status.st_size == 32 * B
    assert status.st_blocks * 512 <= before * 512 - 18 * B
    expected = data[: B + 1] + bytes(20 * B) + data[21 * B + 1 :]
    assert store.read(0, 1, 0, 32 * B, table) == expected
    assert store.recompute(0, 1) == table


def test_punch_past_the_end_does_not_grow_the_file(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    store.write(0, 1, 0, b"y" * 100, table)
    store.punch(0, 1, 50, 5 * B, table)
    assert os.path.getsize(store.path(0, 1)) == 100
    assert store.read(0, 1, 0, 100, table) == b"y" * 50 + bytes(50)


def test_zero_writing_fallback_zeroes_exactly_the_range(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"\xff" * (3 * B))
    fd = os.open(path, os.O_RDWR)
    try:
        blocks.fileio.write_zeros(fd, 10, 2 * B)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"\xff" * 10 + bytes(2 * B) + b"\xff" * (B - 10)


def test_delete_is_idempotent_and_drops_the_cached_fd(store: BlockStore) -> None:
    table = ChecksumTable(store.chunk_size)
    store.write(0, 1, 0, b"z", table)
    store.delete(0, 1)
    store.delete(0, 1)
    assert not os.path.exists(store.path(0, 1))
    # A write after delete creates a new file rather than writing into the unlinked one.
    store.write(0, 1, 0, b"w", ChecksumTable(store.chunk_size))
    assert Path(store.path(0, 1)).read_bytes() == b"w"


def test_fsync_syncs_each_fanout_dir_once_after_creating_files(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = blocks.directories.fsync_directory
    monkeypatch.setattr(blocks.directories, "fsync_directory", lambda path: (synced.append(path), real(path)))
    first = 1
    sibling = next(cid for cid in range(2, 10_000) if fanout_index(cid) == fanout_index(first))
    table = ChecksumTable(store.chunk_size)
    store.write(0, first, 0, b"a", table)
    store.fsync(0, first)
    store.fsync(0, first)
    assert synced == [os.path.dirname(store.path(0, first))]
    store.write(0, sibling, 0, b"b", ChecksumTable(store.chunk_size))
    store.fsync(0, sibling)  # a new name in the same subdirectory: synced again
    assert len(synced) == 2
    store.write(0, sibling, 1, b"c", ChecksumTable(store.chunk_size))
    store.fsync(0, sibling)  # existing file: data only
    assert len(synced) == 2


def test_recompute_of_a_missing_chunk_is_all_zero(store: BlockStore) -> None:
    assert store.recompute(0, 77) == ChecksumTable(store.chunk_size)


def test_iter_chunk_ids_lists_every_chunk_file_and_nothing_else(tmp_path: Path) -> None:
    paths = [tmp_path / "a", tmp_path / "b"]
    for path in paths:
        path.mkdir()
    store = claimed_store([str(path) for path in paths], 8 * B)
    expected = set()
    for chunk_id in range(1, 40):
        dir_index = chunk_id % 2
        store.write(dir_index, chunk_id, 0, b"d", ChecksumTable(8 * B))
        expected.add((dir_index, chunk_id))
    (paths[0] / "00" / "notes.txt").write_text("not a chunk")
    (paths[1] / "0000000000000001.chunk").write_text("outside the fan-out")
    assert set(store.iter_chunk_ids()) == expected
    store.close()


def test_prefetch_of_a_chunk_without_file_does_nothing(store: BlockStore) -> None:
    store.prefetch(0, 6, 0, store.chunk_size)
    assert not os.path.exists(store.path(0, 6))
