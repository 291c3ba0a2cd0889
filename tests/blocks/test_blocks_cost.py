"""A small write into a big chunk costs I/O proportional to the write, never to the chunk."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from blocks_owner import claimed_store

from blocks import CHECKSUM_BLOCK_BYTES, ChecksumTable

B = CHECKSUM_BLOCK_BYTES
CHUNK = 4 * 1024 * 1024


def _io_bytes() -> tuple[int, int]:
    """(rchar, wchar) of this thread: bytes passed through read-like and write-like system calls."""
    with open("/proc/thread-self/io") as file:
        fields = dict(line.split(": ") for line in file.read().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def _cost(action: Callable[[], object]) -> tuple[int, int]:
    before = _io_bytes()
    action()
    after = _io_bytes()
    return after[0] - before[0], after[1] - before[1]


def test_small_writes_and_reads_into_a_full_4mib_chunk_touch_only_their_blocks(block_dir: str) -> None:
    store = claimed_store([block_dir], CHUNK)
    table = ChecksumTable(CHUNK)
    store.write(0, 1, 0, random.Random(1).randbytes(CHUNK), table)
    slack = 1024  # the /proc read itself

    read, written = _cost(lambda: store.write(0, 1, 1024 * 1024, b"\xaa" * B, table))
    assert read < slack and B <= written < B + slack, (read, written)

    read, written = _cost(lambda: store.write(0, 1, 5 * B - 50, b"\xbb" * 100, table))  # two partial blocks
    assert read < 2 * B + slack and written < 100 + slack, (read, written)

    read, written = _cost(lambda: store.read(0, 1, 7 * B + 1, 10, table))
    assert read < B + slack and written == 0, (read, written)

    read, written = _cost(lambda: store.punch(0, 1, 8 * B, B, table))
    assert read < slack and written < slack, (read, written)
    store.close()


def test_an_aligned_write_into_a_new_chunk_allocates_one_block(block_dir: str) -> None:
    store = claimed_store([block_dir], CHUNK)
    table = ChecksumTable(CHUNK)
    store.write(0, 2, 2 * 1024 * 1024, b"\x01" * B, table)
    store.fsync(0, 2)
    status = os.stat(store.path(0, 2))
    assert status.st_size == 2 * 1024 * 1024 + B and status.st_blocks * 512 <= 2 * B
    store.close()
