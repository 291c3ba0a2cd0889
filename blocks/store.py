"""BlockStore: chunk files in block directories, each 4 KiB block guarded by a crc32 in a ChecksumTable.

The metadata layer allocates chunk ids, picks nothing itself but calls choose_directory, and records
(chunk id, directory index, checksum table); this module only owns the files.  All methods are
synchronous and safe to call from many threads.  Two threads writing the *same 4 KiB block* of one chunk
at once must be serialised by the caller (the crc of a partly written block is read back from the file).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from . import directories as dirs
from .checksums import (
    CHECKSUM_BLOCK_BYTES,
    ZERO_BLOCK_CRC,
    ChecksumTable,
    block_checksums,
    block_count,
    block_crc,
)
from .directories import Access
from .errors import BlockDirUnusable, BlockStoreFull, ChecksumMismatch, ChunkMissing
from .fdcache import DEFAULT_MAX_OPEN_FDS, FdCache
from .fileio import DIRECT_ALIGNMENT, pread_into, punch_hole, pwrite_all, pwrite_direct
from .layout import FANOUT_NAMES, chunk_path, fanout_index, parse_chunk_name
from .marker import Owner, marker_path

log = logging.getLogger(__name__)

_BLOCK = CHECKSUM_BLOCK_BYTES
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_RECOMPUTE_READ_BYTES = 1 << 20
_CHUNK_FILE_MODE = 0o600
#: Aligned writes from this size on bypass the page cache (``BlockStore._write_direct``).
DIRECT_WRITE_MIN_BYTES = 256 * 1024


class BlockStore:
    """The chunk files of one filesystem, `owner`, in `directories`: each must carry `owner`'s marker, or
    get it as `access` allows (directories.Access); deleting a chunk file checks the marker first."""

    def __init__(
        self,
        directories: list[str],
        chunk_size: int,
        owner: Owner,
        *,
        access: Access,
        max_open_fds: int = DEFAULT_MAX_OPEN_FDS,
    ) -> None:
        if chunk_size <= 0 or chunk_size % _BLOCK:
            raise ValueError(f"chunk size must be a positive multiple of {_BLOCK}, not {chunk_size}")
        if not directories:
            raise ValueError("a block store needs at least one directory")
        self.chunk_size = chunk_size
        self.owner = owner
        self.directories: list[str] = []
        # Per directory, the stat signature of the marker last found to name `owner`: a deletion re-reads
        # the marker only when it changed (a disk unmounted or swapped shows as another file or none).
        self._owned_markers: dict[int, tuple[int, ...]] = {}
        self._lock = threading.Lock()
        self._fds = FdCache(max_open_fds)
        self._rng = random.Random()
        # Fan-out subdirectories that may hold a directory entry not yet made durable.  Every subdirectory
        # starts out suspect: a previous process may have created files there and died before fsync.
        self._unsynced_dirs: set[tuple[int, int]] = set()
        self._no_direct_io: set[int] = set()  # directories whose filesystem refused O_DIRECT
        for path in directories:
            self.add_directory(path, access)

    @property
    def fd_cache_counts(self) -> tuple[int, int]:
        """Chunk reads and writes that found the chunk file's descriptor open, and those that opened it."""
        return self._fds.hits, self._fds.misses

    # -- directories ---------------------------------------------------------------------------------

    def add_directory(self, path: str, access: Access) -> int:
        self._check_not_listed(path)  # before a claim writes a marker
        prepared = dirs.prepare_directory(path, self.chunk_size, self.owner, access)
        with self._lock:
            self._check_not_listed(prepared)
            index = len(self.directories)
            self.directories.append(prepared)
            self._unsynced_dirs.update((index, fanout) for fanout in range(len(FANOUT_NAMES)))
        return index

    def _check_not_listed(self, path: str) -> None:
        try:
            identity = _identity(path)
        except OSError:
            return  # prepare_directory says what is wrong with it
        for index, existing in enumerate(self.directories):
            if _identity(existing) == identity:
                reason = f"it is already block directory {index} ({existing})"
                raise BlockDirUnusable(os.path.abspath(path), reason)

    def choose_directory(self) -> int:
        return dirs.choose(list(self.directories), self.chunk_size, self._rng)

    def usage(self) -> tuple[int, int]:
        return dirs.total_usage(list(self.directories))

    def holds(self, dir_index: int) -> bool:
        """Whether this store has block directory `dir_index`.  With a data tier, a host whose own cache
        directory stands for the filesystem's block directories has fewer than the records name: a chunk
        of a directory it lacks has no file here (it is another host's), as a chunk never written."""
        return 0 <= dir_index < len(self.directories)

    def path(self, dir_index: int, chunk_id: int) -> str:
        # Guard against negative indexes, which Python lists would quietly count from the end.
        if not self.holds(dir_index):
            raise IndexError(f"no block directory {dir_index} (the store has {len(self.directories)})")
        return chunk_path(self.directories[dir_index], chunk_id)

    def _where(self, dir_index: int, chunk_id: int) -> str:
        """Where a chunk's file would be, for a message."""
        if self.holds(dir_index):
            return self.path(dir_index, chunk_id)
        return f"block directory {dir_index}, which this host does not have"

    def iter_chunk_ids(self) -> Iterator[tuple[int, int]]:
        for dir_index, directory in enumerate(list(self.directories)):
            for name in FANOUT_NAMES:
                try:
                    with os.scandir(os.path.join(directory, name)) as entries:
                        ids = [parse_chunk_name(entry.name) for entry in entries]
                except FileNotFoundError:
                    continue
                for chunk_id in ids:
                    if chunk_id is not None:
                        yield dir_index, chunk_id

    # -- data ----------------------------------------------------------------------------------------

    def write(
        self, dir_index: int, chunk_id: int, offset: int, data: bytes | memoryview, table: ChecksumTable
    ) -> None:
        """Write `data` at `offset` and update `table` for every block touched.

        On BlockStoreFull part of the data may have landed; `table` is then brought in line with what the
        touched blocks hold on disk, so the caller may still commit it for a chunk it already recorded.
        """
        view = memoryview(data).cast("B")
        self._check_range(offset, len(view), table)
        if not view:
            return
        with self._full_errors(dir_index), self._open(dir_index, chunk_id, create=True) as fd:
            try:
                if not self._write_direct(dir_index, chunk_id, view, offset):
                    pwrite_all(fd, view, offset)
            except OSError as error:
                if error.errno in _FULL_ERRNOS:
                    self._resync_blocks(fd, offset, len(view), table)
                raise
            end = offset + len(view)
            first_whole, stop_whole = block_count(offset), end // _BLOCK
            if first_whole < stop_whole:
                start = first_whole * _BLOCK - offset
                whole = view[start : start + (stop_whole - first_whole) * _BLOCK]
                table.set_blocks(first_whole, block_checksums(whole))
            # Partly written blocks (two at most): the rest comes from the file (a 4 KiB read, cached).
            for index in {offset // _BLOCK, (end - 1) // _BLOCK}:
                if not first_whole <= index < stop_whole:
                    table.set(index, self._crc_on_disk(fd, index))

    def _write_direct(self, dir_index: int, chunk_id: int, view: memoryview, offset: int) -> bool:
        """Write a large aligned piece with O_DIRECT (True), else leave it to the caller (False).

        Through the page cache, a sequential writer's data would be copied twice more (into the chunk
        file's pages, then by writeback), and those pages would crowd the cache while fsync waited for
        them all; written direct, it goes from one reused buffer to the disk in the background writer
        (fusefs/writebehind.py), and a later fsync has little left to do.  Reads after it stay coherent:
        the kernel drops cached pages a direct write overlaps."""
        if (
            len(view) < DIRECT_WRITE_MIN_BYTES
            or offset % DIRECT_ALIGNMENT
            or len(view) % DIRECT_ALIGNMENT
            or dir_index in self._no_direct_io
        ):
            return False
        if pwrite_direct(self.path(dir_index, chunk_id), view, offset):
            return True
        log.info(
            "block directory %s does not take O_DIRECT: large writes go through the page cache",
            self.directories[dir_index],
        )
        self._no_direct_io.add(dir_index)
        return False

    def read(
        self, dir_index: int, chunk_id: int, offset: int, length: int, table: ChecksumTable | None
    ) -> bytes:
        """Exactly `length` bytes from `offset` (zeros past the end and in holes), checked by `table`."""
        self._check_range(offset, length, table)
        if not length:
            return b""
        first, stop = offset // _BLOCK, block_count(offset + length)
        try:
            with self._open(dir_index, chunk_id, create=False) as fd:
                if table is None:
                    buffer = bytearray(length)
                    pread_into(fd, buffer, offset)
                    return bytes(buffer)
                # Verification needs whole blocks; the buffer is zeroed, so a short read is zero padding.
                buffer = bytearray((stop - first) * _BLOCK)
                pread_into(fd, buffer, first * _BLOCK)
        except FileNotFoundError:
            if table is not None and table.all_zero(first, stop):
                return bytes(length)  # never written: the chunk file was never created
            raise ChunkMissing(chunk_id, self._where(dir_index, chunk_id)) from None
        view = memoryview(buffer)
        mismatch = table.mismatch(first, view)
        if mismatch is not None:
            index, actual = mismatch
            raise ChecksumMismatch(chunk_id, index, self.path(dir_index, chunk_id), table.get(index), actual)
        skip = offset - first * _BLOCK
        return bytes(view[skip : skip + length])

    def prefetch(self, dir_index: int, chunk_id: int, offset: int, length: int) -> None:
        """Ask the kernel to start reading a range of a chunk file into its page cache, without waiting
        for it (a sequential reader's next chunk: otherwise each new chunk file starts with a wait for
        the disk).  Nothing to do for a chunk with no file (never written)."""
        try:
            with self._open(dir_index, chunk_id, create=False) as fd:
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
        except FileNotFoundError:
            pass

    def truncate(self, dir_index: int, chunk_id: int, length: int, table: ChecksumTable) -> None:
        """Shrink the chunk file to `length` (never grow it) and update `table`."""
        self._check_range(length, 0, table)
        try:
            with self._full_errors(dir_index), self._open(dir_index, chunk_id, create=False) as fd:
                if os.fstat(fd).st_size <= length:
                    table.truncate(length)  # content unchanged; only clears entries a stale table may hold
                    return
                os.ftruncate(fd, length)
                table.truncate(length)
                if length % _BLOCK:
                    table.set(length // _BLOCK, self._crc_on_disk(fd, length // _BLOCK))
        except FileNotFoundError:
            self._require_zero(dir_index, chunk_id, table, 0, block_count(length))
            table.truncate(length)

    def punch(self, dir_index: int, chunk_id: int, offset: int, length: int, table: ChecksumTable) -> None:
        """Make [offset, offset+length) read as zeros, freeing its space where the filesystem allows."""
        self._check_range(offset, length, table)
        if not length:
            return
        end = offset + length
        try:
            with self._full_errors(dir_index), self._open(dir_index, chunk_id, create=False) as fd:
                # Punching past the end of the file would not change what reads return; stay within it.
                punch_hole(fd, offset, min(end, os.fstat(fd).st_size) - offset)
                for index in range(offset // _BLOCK, block_count(end)):
                    start = index * _BLOCK
                    whole = offset <= start and start + _BLOCK <= end
                    table.set(index, ZERO_BLOCK_CRC if whole else self._crc_on_disk(fd, index))
        except FileNotFoundError:
            self._require_zero(dir_index, chunk_id, table, offset // _BLOCK, block_count(end))

    def delete(self, dir_index: int, chunk_id: int) -> None:
        """Remove a chunk file; BlockDirNotOwned, deleting nothing, if its directory is not `owner`'s now.
        A chunk of a directory this store does not have has no file here: nothing to do."""
        if not self.holds(dir_index):
            return
        path = self.path(dir_index, chunk_id)
        self._check_owned(dir_index)
        self._fds.invalidate((dir_index, chunk_id))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def fsync(self, dir_index: int, chunk_id: int) -> None:
        """Make the chunk's data durable, and after its creation its name (one fsync per subdirectory)."""
        try:
            with self._full_errors(dir_index), self._open(dir_index, chunk_id, create=False) as fd:
                os.fsync(fd)
        except FileNotFoundError:
            log.debug("fsync of chunk %d: no file, nothing to make durable", chunk_id)
            return
        subdir = (dir_index, fanout_index(chunk_id))
        with self._lock:
            if subdir not in self._unsynced_dirs:
                return
            # Cleared before the directory fsync: a file created meanwhile marks it again, and one created
            # before is covered by this fsync.
            self._unsynced_dirs.discard(subdir)
        try:
            dirs.fsync_directory(os.path.dirname(self.path(dir_index, chunk_id)))
        except BaseException:
            with self._lock:
                self._unsynced_dirs.add(subdir)
            raise

    def recompute(self, dir_index: int, chunk_id: int) -> ChecksumTable:
        """A table built from the chunk file as it is now; all zero blocks if there is no file."""
        table = ChecksumTable(self.chunk_size)
        buffer = bytearray(_RECOMPUTE_READ_BYTES)
        try:
            with self._open(dir_index, chunk_id, create=False) as fd:
                for start in range(0, self.chunk_size, len(buffer)):
                    count = pread_into(fd, buffer, start)
                    for block_start in range(0, count, _BLOCK):
                        crc = block_crc(memoryview(buffer)[block_start : min(block_start + _BLOCK, count)])
                        table.set((start + block_start) // _BLOCK, crc)
                    if count < len(buffer):
                        break
                if os.fstat(fd).st_size > self.chunk_size:
                    log.warning("chunk file %s is longer than a chunk", self.path(dir_index, chunk_id))
        except FileNotFoundError:
            pass
        return table

    def close(self) -> None:
        """Close cached descriptors; the store stays usable and reopens files on demand."""
        self._fds.close_all()

    # -- helpers -------------------------------------------------------------------------------------

    def _check_owned(self, dir_index: int) -> None:
        directory = self.directories[dir_index]
        try:
            status = os.stat(marker_path(directory))
            signature: tuple[int, ...] | None = (
                status.st_dev,
                status.st_ino,
                status.st_size,
                status.st_mtime_ns,
                status.st_ctime_ns,
            )
        except FileNotFoundError:
            signature = None
        if signature is not None and self._owned_markers.get(dir_index) == signature:
            return
        dirs.check_owner(directory, self.owner)
        if signature is not None:
            self._owned_markers[dir_index] = signature

    @contextmanager
    def _open(self, dir_index: int, chunk_id: int, *, create: bool) -> Iterator[int]:
        """A cached read-write descriptor; FileNotFoundError if the file is absent (or its directory is
        not this store's: ``holds``) and not `create`."""
        if not create and not self.holds(dir_index):
            raise FileNotFoundError(self._where(dir_index, chunk_id))
        path = self.path(dir_index, chunk_id)

        def opener() -> int:
            try:
                return os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                if not create:
                    raise
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _CHUNK_FILE_MODE)
            with self._lock:
                self._unsynced_dirs.add((dir_index, fanout_index(chunk_id)))
            return fd

        with self._fds.use((dir_index, chunk_id), opener) as fd:
            yield fd

    @contextmanager
    def _full_errors(self, dir_index: int) -> Iterator[None]:
        """Turn ENOSPC/EDQUOT into BlockStoreFull naming the directory."""
        try:
            yield
        except OSError as error:
            if error.errno not in _FULL_ERRNOS:
                raise
            raise BlockStoreFull([self.directories[dir_index]], error.strerror or "") from error

    def _check_range(self, offset: int, length: int, table: ChecksumTable | None) -> None:
        if offset < 0 or length < 0 or offset + length > self.chunk_size:
            raise ValueError(f"range {offset}+{length} is outside a chunk of {self.chunk_size} bytes")
        if table is not None and table.chunk_size != self.chunk_size:
            raise ValueError(f"checksum table is for {table.chunk_size}-byte chunks, not {self.chunk_size}")

    def _require_zero(
        self, dir_index: int, chunk_id: int, table: ChecksumTable, first: int, stop: int
    ) -> None:
        """A missing chunk file is only fine where the table says the blocks were never written."""
        if not table.all_zero(first, stop):
            raise ChunkMissing(chunk_id, self._where(dir_index, chunk_id))

    @staticmethod
    def _crc_on_disk(fd: int, index: int) -> int:
        buffer = bytearray(_BLOCK)
        pread_into(fd, buffer, index * _BLOCK)
        return block_crc(buffer)

    def _resync_blocks(self, fd: int, offset: int, length: int, table: ChecksumTable) -> None:
        """After a failed write, record what the touched blocks now hold (best effort: the disk is full)."""
        try:
            for index in range(offset // _BLOCK, block_count(offset + length)):
                table.set(index, self._crc_on_disk(fd, index))
        except OSError as error:
            log.warning("cannot re-read blocks after a failed write: %s", error)


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino
