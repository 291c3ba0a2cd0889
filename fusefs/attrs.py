"""Inode attributes as the kernel wants them."""

from __future__ import annotations

import pyfuse3

from metadata.model import InodeAttr

BLOCK_BYTES = 512  # st_blocks is counted in 512-byte units whatever the filesystem's block size
PREFERRED_IO_BYTES = 128 * 1024


def entry_attributes(attr: InodeAttr, timeout_s: float) -> pyfuse3.EntryAttributes:
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = attr.ino
    entry.generation = 0
    entry.entry_timeout = timeout_s
    entry.attr_timeout = timeout_s
    entry.st_mode = attr.mode
    entry.st_nlink = attr.nlink
    entry.st_uid = attr.uid
    entry.st_gid = attr.gid
    entry.st_rdev = attr.rdev
    entry.st_size = attr.size
    entry.st_blksize = PREFERRED_IO_BYTES
    # A chunked file may be sparse: count what its chunks hold, not its size (du reports this).
    occupied = attr.allocated if attr.chunked else attr.size
    entry.st_blocks = -(-occupied // BLOCK_BYTES)
    entry.st_atime_ns = attr.atime_ns
    entry.st_mtime_ns = attr.mtime_ns
    entry.st_ctime_ns = attr.ctime_ns
    return entry
