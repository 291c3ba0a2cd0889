"""Bounds on a filesystem's chunk size and inline threshold that every store backend can hold.

Each chunk of a large file has a record in the metadata store holding its checksum table: 4 bytes per
4 KiB block, so the record grows with the chunk size.  A store value may not exceed 100 000 bytes
(FoundationDB's limit, which the embedded store enforces too), and FoundationDB advises keeping values
under 10 kB; the largest chunk size is the largest power of two whose fullest record stays within that.
A small file is held in memory while open and written back whole in one transaction, which
FoundationDB advises keeping under 1 MB: that bounds the inline threshold.
"""

from __future__ import annotations

from blocks.checksums import CHECKSUM_BLOCK_BYTES, table_bytes
from metadata.model import ChunkRecord
from metadata.store import MAX_VALUE_BYTES

#: FoundationDB's advice for value sizes, a tenth of its hard limit: the margin.
RECORD_TARGET_BYTES = 10_000
MAX_INLINE_MAX_BYTES = 1 << 20


def chunk_record_bytes(chunk_size: int) -> int:
    """The largest encoded chunk record of a chunk of `chunk_size` bytes: every block written, ids at
    their largest."""
    fullest = ChunkRecord(2**64 - 1, 2**32 - 1, bytes(table_bytes(chunk_size)), dirty=True)
    return len(fullest.encode())


def _largest_chunk_size() -> int:
    size = CHECKSUM_BLOCK_BYTES
    while chunk_record_bytes(2 * size) <= RECORD_TARGET_BYTES:
        size *= 2
    assert chunk_record_bytes(size) <= RECORD_TARGET_BYTES < MAX_VALUE_BYTES
    return size


MAX_CHUNK_SIZE_BYTES = _largest_chunk_size()


def human(count: int) -> str:
    """``8 MiB`` for a whole number of KiB/MiB, else the byte count."""
    for unit, name in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if count >= unit and count % unit == 0:
            return f"{count // unit} {name}"
    return f"{count} bytes"


def chunk_size_problem(chunk_size: int) -> str | None:
    """What is wrong with `chunk_size` ("must be ..., not N"), or None."""
    if chunk_size <= 0 or chunk_size % CHECKSUM_BLOCK_BYTES:
        return f"must be a positive multiple of 4 KiB, not {chunk_size}"
    if chunk_size > MAX_CHUNK_SIZE_BYTES:
        return (
            f"must be at most {human(MAX_CHUNK_SIZE_BYTES)} (a chunk's checksum record must stay under "
            f"{RECORD_TARGET_BYTES} bytes in the metadata store), not {chunk_size}"
        )
    return None


def inline_max_problem(inline_max: int, chunk_size: int) -> str | None:
    """What is wrong with `inline_max` for chunks of `chunk_size` ("must be ..., not N"), or None."""
    bound = min(chunk_size, MAX_INLINE_MAX_BYTES)
    if not 0 <= inline_max <= bound:
        return (
            f"must be between 0 and the chunk size, and at most {human(MAX_INLINE_MAX_BYTES)} (a small "
            f"file is written back in one transaction): at most {bound} here, not {inline_max}"
        )
    return None
