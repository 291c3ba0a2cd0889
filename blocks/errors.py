"""Errors raised by the block store.

Each class carries the ``errno`` the FUSE boundary should answer with, so the adapter can translate every
``BlockError`` in one place without knowing the classes.  Other ``OSError``s (EIO from a failing disk, for
example) propagate unchanged and already carry their errno.
"""

from __future__ import annotations

import errno as errno_codes


class BlockError(Exception):
    """Base of every error the block store raises on purpose."""

    errno: int = errno_codes.EIO


class BlockDirUnusable(BlockError):
    """A block directory is missing, not a directory, or not readable and writable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"block directory {path!r} is unusable: {reason}")
        self.path = path
        self.reason = reason


class BlockDirNotOwned(BlockDirUnusable):
    """A block directory's marker is missing or names another filesystem: using it could lose data."""

    def __init__(self, path: str, message: str) -> None:
        BlockError.__init__(self, message)
        self.path = path
        self.reason = message


class BlockStoreFull(BlockError):
    """No usable block directory has room (ENOSPC or EDQUOT)."""

    errno = errno_codes.ENOSPC

    def __init__(self, directories: list[str], detail: str = "") -> None:
        names = ", ".join(repr(d) for d in directories)
        message = f"no space left in block directories {names}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.directories = directories


class ChecksumMismatch(BlockError):
    """A 4 KiB block of a chunk does not match its recorded crc32: the data on disk is corrupt."""

    def __init__(self, chunk_id: int, block_index: int, path: str, expected: int, actual: int) -> None:
        super().__init__(
            f"checksum mismatch in chunk {chunk_id} block {block_index} ({path}): "
            f"expected crc32 {expected:#010x}, found {actual:#010x}"
        )
        self.chunk_id = chunk_id
        self.block_index = block_index
        self.path = path
        self.expected = expected
        self.actual = actual


class ChunkMissing(BlockError):
    """The chunk file is absent although its checksum table says it holds data."""

    def __init__(self, chunk_id: int, path: str) -> None:
        super().__init__(f"chunk {chunk_id} is missing: {path} does not exist")
        self.chunk_id = chunk_id
        self.path = path
