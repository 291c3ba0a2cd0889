"""Per-chunk crc32 tables: one checksum per 4 KiB block of a chunk.

A block is checksummed as 4096 bytes with zero padding past the end of the data, so a hole, a block past
the chunk file's end and a block of written zeros all have the same checksum, ``ZERO_BLOCK_CRC``.  That is
what lets a table describe a sparse chunk without knowing where the file ends.
"""

from __future__ import annotations

import sys
from array import array

# ISA-L's crc32 is zlib's CRC-32 (same values, so tables written before read the same), with carry-less
# multiplication: 4 KiB blocks at ~0.2 ms per MiB instead of zlib's ~0.7 ms, on every large read and write.
from isal.isal_zlib import crc32

CHECKSUM_BLOCK_BYTES = 4096
#: A crc32 per block.
CHECKSUM_BYTES = 4

_ZERO_BLOCK = bytes(CHECKSUM_BLOCK_BYTES)
ZERO_BLOCK_CRC: int = crc32(_ZERO_BLOCK)

# The serialised table is little-endian whatever the host, so a table written on one machine reads on another.
_SWAP_BYTES = sys.byteorder != "little"


def block_count(length: int) -> int:
    """Number of 4 KiB blocks that `length` bytes touch (the last one possibly partial)."""
    return -(-length // CHECKSUM_BLOCK_BYTES)


def table_bytes(chunk_size: int) -> int:
    """Size of the serialised checksum table of a chunk of `chunk_size` bytes with every block written."""
    return CHECKSUM_BYTES * block_count(chunk_size)


def block_crc(block: bytes | bytearray | memoryview) -> int:
    """crc32 of one block of at most 4096 bytes, zero-padded to 4096."""
    crc = crc32(block)
    padding = CHECKSUM_BLOCK_BYTES - len(block)
    if padding:
        crc = crc32(memoryview(_ZERO_BLOCK)[:padding], crc)
    return crc


def block_checksums(data: bytes | bytearray | memoryview, first_block: int = 0) -> list[int]:
    """crc32 of each 4 KiB block of `data`, starting at its block `first_block`; the last one zero-padded.

    `data` is taken to start on a block boundary.  `first_block` skips that many leading blocks, so a
    caller holding a whole chunk can checksum its tail without slicing.
    """
    view = memoryview(data).cast("B")
    return [
        block_crc(view[start : start + CHECKSUM_BLOCK_BYTES])
        for start in range(first_block * CHECKSUM_BLOCK_BYTES, len(view), CHECKSUM_BLOCK_BYTES)
    ]


class ChecksumTable:
    """crc32 of every 4 KiB block of one chunk of `chunk_size` bytes; blocks never written are ZERO_BLOCK_CRC.

    Mutated in place by BlockStore.write/truncate/punch.  Single-entry get/set are atomic under the GIL;
    callers that write the same block of one chunk from two threads must serialise those writes anyway.
    """

    __slots__ = ("chunk_size", "_crcs")

    def __init__(self, chunk_size: int, raw: bytes | None = None) -> None:
        if chunk_size <= 0:
            raise ValueError(f"chunk size must be positive, not {chunk_size}")
        self.chunk_size = chunk_size
        count = block_count(chunk_size)
        self._crcs = array("I")
        if raw:
            if len(raw) % 4 or len(raw) > 4 * count:
                raise ValueError(f"checksum table of {len(raw)} bytes does not fit a chunk of {count} blocks")
            self._crcs.frombytes(raw)
            if _SWAP_BYTES:
                self._crcs.byteswap()
        self._crcs.extend([ZERO_BLOCK_CRC] * (count - len(self._crcs)))

    def to_bytes(self) -> bytes:
        """Packed little-endian uint32 array; trailing ZERO_BLOCK_CRC entries are left out (smaller)."""
        end = len(self._crcs)
        while end and self._crcs[end - 1] == ZERO_BLOCK_CRC:
            end -= 1
        used = self._crcs[:end]
        if _SWAP_BYTES:
            used.byteswap()
        return used.tobytes()

    def get(self, index: int) -> int:
        self._check_index(index)
        return self._crcs[index]

    def set(self, index: int, crc: int) -> None:
        self._check_index(index)
        self._crcs[index] = crc

    def set_blocks(self, first: int, crcs: list[int]) -> None:
        """Set the checksums of blocks ``first``, ``first + 1``, ... at once (a large write's)."""
        if crcs:
            self._check_index(first)
            self._check_index(first + len(crcs) - 1)
            self._crcs[first : first + len(crcs)] = array("I", crcs)

    def mismatch(self, first: int, data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
        """The first block of ``data`` (block ``first`` onward, on a block boundary, the last one
        zero-padded) whose crc32 is not the table's, as (block index, its crc32); None when all match."""
        actual = array("I", block_checksums(data))
        if not actual:
            return None
        self._check_index(first)
        self._check_index(first + len(actual) - 1)
        if self._crcs[first : first + len(actual)] == actual:
            return None
        return next((first + i, crc) for i, crc in enumerate(actual) if crc != self._crcs[first + i])

    def truncate(self, length: int) -> None:
        """Mark every block wholly past `length` as never written (the caller recomputes a partial last
        block)."""
        if not 0 <= length <= self.chunk_size:
            raise ValueError(f"cannot truncate a chunk of {self.chunk_size} bytes to {length}")
        first_dead = block_count(length)
        self._crcs[first_dead:] = array("I", [ZERO_BLOCK_CRC] * (len(self._crcs) - first_dead))

    def all_zero(self, first: int, stop: int) -> bool:
        """True if blocks first..stop-1 were never written (or hold only zeros)."""
        return all(crc == ZERO_BLOCK_CRC for crc in self._crcs[first:stop])

    def allocated_bytes(self) -> int:
        """Bytes of blocks holding data: what the chunk occupies, holes (and zero blocks) excluded."""
        return (len(self._crcs) - self._crcs.count(ZERO_BLOCK_CRC)) * CHECKSUM_BLOCK_BYTES

    def copy(self) -> ChecksumTable:
        return ChecksumTable(self.chunk_size, self.to_bytes())

    def __len__(self) -> int:
        return len(self._crcs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChecksumTable):
            return NotImplemented
        return self.chunk_size == other.chunk_size and self._crcs == other._crcs

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        written = sum(crc != ZERO_BLOCK_CRC for crc in self._crcs)
        return f"ChecksumTable(chunk_size={self.chunk_size}, {written}/{len(self._crcs)} blocks non-zero)"

    def _check_index(self, index: int) -> None:
        # array would accept negative indexes and count from the end, which is never what a caller means.
        if not 0 <= index < len(self._crcs):
            raise IndexError(f"block {index} is outside a chunk of {len(self._crcs)} blocks")
