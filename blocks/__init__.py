"""Chunk files of large files, kept in one or more local block directories.

Knows nothing of the metadata key layout, FUSE or trio: the metadata layer allocates chunk ids and records
(chunk id, directory index, checksum table); BlockStore reads and writes the files.
"""

from .checksums import CHECKSUM_BLOCK_BYTES, ZERO_BLOCK_CRC, ChecksumTable, block_checksums
from .directories import Access
from .errors import (
    BlockDirNotOwned,
    BlockDirUnusable,
    BlockError,
    BlockStoreFull,
    ChecksumMismatch,
    ChunkMissing,
)
from .marker import Owner
from .store import BlockStore

__all__ = [
    "CHECKSUM_BLOCK_BYTES",
    "ZERO_BLOCK_CRC",
    "Access",
    "BlockDirNotOwned",
    "BlockDirUnusable",
    "BlockError",
    "BlockStore",
    "BlockStoreFull",
    "ChecksumMismatch",
    "ChecksumTable",
    "ChunkMissing",
    "Owner",
    "block_checksums",
]
