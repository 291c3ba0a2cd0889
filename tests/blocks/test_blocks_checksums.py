from __future__ import annotations

import random
import zlib

import pytest

from blocks import CHECKSUM_BLOCK_BYTES, ZERO_BLOCK_CRC, ChecksumTable, block_checksums

B = CHECKSUM_BLOCK_BYTES


def test_zero_block_crc_is_crc_of_a_zero_block() -> None:
    assert ZERO_BLOCK_CRC == zlib.crc32(bytes(B))


def test_block_checksums_pad_the_last_block_with_zeros() -> None:
    data = random.Random(1).randbytes(2 * B + 100)
    assert block_checksums(data) == [
        zlib.crc32(data[:B]),
        zlib.crc32(data[B : 2 * B]),
        zlib.crc32(data[2 * B :] + bytes(B - 100)),
    ]
    assert block_checksums(memoryview(data), first_block=1) == block_checksums(data)[1:]
    assert block_checksums(b"") == []


def test_new_table_is_all_zero_and_serialises_to_nothing() -> None:
    table = ChecksumTable(16 * B)
    assert len(table) == 16
    assert all(table.get(index) == ZERO_BLOCK_CRC for index in range(16))
    assert table.to_bytes() == b""


def test_table_round_trip_drops_only_trailing_zero_entries() -> None:
    table = ChecksumTable(16 * B)
    table.set(0, 7)
    table.set(5, 0xFFFFFFFF)
    raw = table.to_bytes()
    assert raw == (7).to_bytes(4, "little") + ZERO_BLOCK_CRC.to_bytes(4, "little") * 4 + b"\xff" * 4
    copy = ChecksumTable(16 * B, raw)
    assert copy == table
    assert copy.get(5) == 0xFFFFFFFF and copy.get(15) == ZERO_BLOCK_CRC


@pytest.mark.parametrize("raw", [b"\x00" * 3, b"\x00" * 4 * 17])
def test_table_rejects_raw_that_does_not_fit(raw: bytes) -> None:
    with pytest.raises(ValueError):
        ChecksumTable(16 * B, raw)


def test_table_index_bounds() -> None:
    table = ChecksumTable(4 * B)
    for bad in (-1, 4):
        with pytest.raises(IndexError):
            table.get(bad)
        with pytest.raises(IndexError):
            table.set(bad, 1)


def test_truncate_clears_blocks_wholly_past_the_length() -> None:
    table = ChecksumTable(8 * B)
    for index in range(8):
        table.set(index, index + 1)
    table.truncate(3 * B + 1)  # block 3 is partial: left for the caller to recompute
    assert [table.get(index) for index in range(8)] == [1, 2, 3, 4] + [ZERO_BLOCK_CRC] * 4
    table.truncate(0)
    assert table.to_bytes() == b""
    with pytest.raises(ValueError):
        table.truncate(8 * B + 1)


def test_set_blocks_sets_a_run_of_checksums_and_refuses_one_past_the_chunk() -> None:
    table = ChecksumTable(8 * B)
    table.set_blocks(2, [5, 6, 7])
    assert [table.get(index) for index in range(1, 6)] == [ZERO_BLOCK_CRC, 5, 6, 7, ZERO_BLOCK_CRC]
    with pytest.raises(IndexError):
        table.set_blocks(6, [1, 2, 3])
    assert table.get(6) == ZERO_BLOCK_CRC  # the refused call set nothing
    table.set_blocks(8, [])  # nothing to set: no index to check


def test_mismatch_names_the_first_block_that_differs_and_its_crc() -> None:
    data = random.Random(2).randbytes(3 * B)
    table = ChecksumTable(8 * B)
    table.set_blocks(1, block_checksums(data))
    assert table.mismatch(1, data) is None
    damaged = bytearray(data)
    damaged[B + 10] ^= 1
    assert table.mismatch(1, damaged) == (2, zlib.crc32(bytes(damaged[B : 2 * B])))
    assert table.mismatch(0, data) == (0, zlib.crc32(data[:B]))  # block 0 was never written
    assert table.mismatch(1, memoryview(data)[: B + 5]) == (2, zlib.crc32(data[B : B + 5] + bytes(B - 5)))
    with pytest.raises(IndexError):
        table.mismatch(6, data)
    assert table.mismatch(3, b"") is None
