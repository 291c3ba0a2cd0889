"""Chunks over the object data tier: the local block directories stage writes and cache reads.

A chunk written on this host lives in a chunk file of the local BlockStore (the staging area); when it is
sealed (full, or the file is closed or fsynced) its bytes become a new immutable object,
``<chunk id>.<version>``, uploaded by one of ``UPLOAD_THREADS`` threads (``start_upload``), and the chunk
record points at that version in the same transaction that makes the data visible.  The bytes waiting
for an upload are bounded by a staging budget (blocks/staging.py).

Chunk ids are allocated once, store-wide, and only the host that allocated one ever writes its chunk
file; a host that writes a chunk it does not hold locally takes a new chunk id whose first version is a
copy of the object (``copy``: a crash before the next flush leaves the record at what was acknowledged),
so a local chunk file is never an older version than the record it serves.  Chunks other
hosts wrote are fetched whole into a cache directory under the name of their version, so a cached file
is never served for another version.  Every read, from the object store or from the cache, is checked
against the chunk's crc table (blocks/checksums.py) recorded with it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import secrets
import tempfile
import threading
import time
from collections import OrderedDict

from .checksums import CHECKSUM_BLOCK_BYTES, ZERO_BLOCK_CRC, ChecksumTable, block_count
from .errors import ChecksumMismatch
from .fileio import DIRECT_ALIGNMENT, pread_into, pwrite_all, pwrite_direct
from .objects import ObjectMissing, ObjectStore, ObjectStoreError, object_name
from .staging import DEFAULT_STAGING_BYTES, Reservation, StagingBudget
from .store import BlockStore

log = logging.getLogger(__name__)

_BLOCK = CHECKSUM_BLOCK_BYTES
#: Uploads retry with exponential backoff, from the first to the longest pause, until this patience runs
#: out; the close or fsync waiting for them then fails with EIO (the data stays staged and dirty).
UPLOAD_PATIENCE_S = 120.0
RETRY_FIRST_S = 0.2
RETRY_LONGEST_S = 5.0
#: A fetch that cannot be served within this answers EIO.
FETCH_PATIENCE_S = 30.0
CACHE_DIR_NAME = "object-cache"
DEFAULT_CACHE_BYTES = 8 << 30
#: Uploads in flight at once, per mount.
UPLOAD_THREADS = 8
#: Objects fetched ahead of sequential reads at once, per mount (``prefetch``).
PREFETCH_THREADS = 8
#: The latest objects fetched ahead are kept in memory as well (at most this many chunks per mount): a
#: sequential reader's reads of one are answered without reading its cache file back and checking it.
HELD_OBJECTS = 8


def new_version() -> int:
    """A version number for a new object of a chunk: random, so hosts never collide without asking."""
    return secrets.randbits(63) | 1


def verified_object(data: bytes, chunk_id: int, version: int, length: int, table: ChecksumTable) -> bytes:
    """The first `length` bytes of object `chunk_id`.`version`, checked against `table`."""
    data = data[:length]
    mismatch = table.mismatch(0, data)  # the blocks the object holds, in one pass
    if mismatch is None:  # and those past its end read as zeros
        past_end = range(block_count(len(data)), block_count(table.chunk_size))
        index = next((i for i in past_end if table.get(i) != ZERO_BLOCK_CRC), None)
        if index is None:
            return data
        mismatch = (index, ZERO_BLOCK_CRC)
    index, actual = mismatch
    name = object_name(chunk_id, version)
    raise ChecksumMismatch(chunk_id, index, f"object {name}", table.get(index), actual)


def _piece(data: bytes, offset: int, length: int) -> bytes:
    """`length` bytes of a verified object from `offset`: zeros past its end (the chunk's end)."""
    return bytes(memoryview(data)[offset : offset + length]).ljust(length, b"\0")


class ChunkTier:
    """The object tier of one filesystem on this host: `objects`, staged through `blocks`, cached in
    ``CACHE_DIR_NAME`` of its first block directory.  Synchronous: run the methods in threads."""

    def __init__(
        self,
        objects: ObjectStore,
        blocks: BlockStore,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        fetch_patience_s: float = FETCH_PATIENCE_S,
        staging_bytes: int = DEFAULT_STAGING_BYTES,
        upload_patience_s: float = UPLOAD_PATIENCE_S,
    ) -> None:
        self.objects = objects
        #: How long uploads retry, and a write waits for staging room, before failing with EIO.
        self.upload_patience_s = upload_patience_s
        self._blocks = blocks
        self.staging = StagingBudget(staging_bytes)
        self._uploads = concurrent.futures.ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload")
        self._fetch_patience_s = fetch_patience_s
        self.cache_dir = os.path.join(blocks.directories[0], CACHE_DIR_NAME)
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        # Cached objects, least recently used first, with their sizes: evicted past `cache_bytes`.  Only
        # uploaded versions are ever here; staged chunks live in the block directories, never evicted.
        self._cache_bytes = cache_bytes
        self._lru: OrderedDict[str, int] = OrderedDict()
        self._cached_total = 0
        self._lru_lock = threading.Lock()
        #: Reads served from the cache, and objects fetched for a read or ahead of one (the daemon's stats).
        self.cache_hits = 0
        self.cache_misses = 0
        # Fetches ahead of a sequential reader, by object name, until cached: a read of one waits for it.
        self._prefetching: dict[str, concurrent.futures.Future[bytes]] = {}
        self._held: OrderedDict[str, bytes] = OrderedDict()  # verified, oldest first
        self._prefetchers = concurrent.futures.ThreadPoolExecutor(
            PREFETCH_THREADS, thread_name_prefix="fetch"
        )
        for entry in sorted(os.scandir(self.cache_dir), key=lambda e: e.stat().st_mtime):
            if entry.name.startswith(".fetch-"):
                os.unlink(entry.path)  # a fetch cut short by a crash
            else:
                self._remember(entry.name, entry.stat().st_size)
        self._evict(keep=None)

    def is_local(self, dir_index: int, chunk_id: int) -> bool:
        """Whether this host holds the chunk file (it allocated the chunk id and wrote it)."""
        return self._blocks.holds(dir_index) and os.path.exists(self._blocks.path(dir_index, chunk_id))

    # -- writing --------------------------------------------------------------------------------------
    def start_upload(
        self,
        dir_index: int,
        chunk_id: int,
        length: int,
        table: ChecksumTable,
        reservation: Reservation,
        after: concurrent.futures.Future[None] | None = None,
    ) -> concurrent.futures.Future[tuple[int, ChecksumTable]]:
        """``upload`` in an upload thread, once `after` (the last write in flight to the chunk) is done;
        the future's result is the new version and the copy of `table` it was uploaded as (the caller
        records that version only if the table has not changed since).  `reservation` is released once
        the upload succeeded: the staged bytes are then in the object store."""

        def seal() -> tuple[int, ChecksumTable]:
            if after is not None:
                concurrent.futures.wait([after])  # its error is the file's to report, at its next write
            sealed = table.copy()
            version = self.upload(dir_index, chunk_id, length, sealed)
            reservation.release()
            return version, sealed

        return self._uploads.submit(seal)

    def close(self) -> None:
        """Stop the upload and fetch threads: uploads not started are dropped (every open file was
        flushed), as are fetches ahead of reads."""
        self._uploads.shutdown(wait=False, cancel_futures=True)
        self._prefetchers.shutdown(wait=False, cancel_futures=True)
        with self._lru_lock:
            for fetched in self._prefetching.values():
                fetched.cancel()  # not started: no thread will ever answer its readers

    def upload(self, dir_index: int, chunk_id: int, length: int, table: ChecksumTable) -> int:
        """Seal the first `length` bytes of a staged chunk as a new object; returns its version."""
        data = self._blocks.read(dir_index, chunk_id, 0, length, table)
        version = new_version()
        self._retrying(
            f"upload of chunk {chunk_id}", lambda: self.objects.put(object_name(chunk_id, version), data)
        )
        return version

    def copy(
        self, chunk_id: int, version: int, length: int, table: ChecksumTable, new_id: int
    ) -> tuple[int, bytes]:
        """Object `chunk_id`.`version` (first `length` bytes, checked against `table`) uploaded again as
        the first version of chunk `new_id`; returns that version and the data, for the caller to write
        as the local chunk.  The copy's record then points at what was acknowledged until the new
        writes are, whatever happens to this host before its next flush."""
        data = self._fetch(chunk_id, version, length, table)
        copied = new_version()
        self._retrying(
            f"copy of chunk {chunk_id} as {new_id}",
            lambda: self.objects.put(object_name(new_id, copied), data),
        )
        return copied, data

    # -- reading --------------------------------------------------------------------------------------
    def read(self, chunk_id: int, version: int, offset: int, length: int, table: ChecksumTable) -> bytes:
        """Bytes of object `chunk_id`.`version`, from the cache, fetched whole into it on a miss."""
        cached = self.read_cached(chunk_id, version, offset, length, table)
        if cached is not None:
            return cached
        name = object_name(chunk_id, version)
        with self._lru_lock:
            ahead = self._prefetching.get(name)
        data = self._fetch_into_cache(chunk_id, version, table) if ahead is None else ahead.result()
        return _piece(data, offset, length)

    def read_cached(
        self, chunk_id: int, version: int, offset: int, length: int, table: ChecksumTable
    ) -> bytes | None:
        """Bytes of object `chunk_id`.`version` held in memory or from the cache, None if neither has it:
        a local read, never a request to the object store."""
        name = object_name(chunk_id, version)
        with self._lru_lock:
            held = self._held.get(name)
        if held is not None:
            self.cache_hits += 1
            return _piece(held, offset, length)
        path = os.path.join(self.cache_dir, name)
        first, stop = offset // _BLOCK, block_count(offset + length)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        self.cache_hits += 1
        buffer = bytearray((stop - first) * _BLOCK)
        try:
            pread_into(fd, buffer, first * _BLOCK)
        finally:
            os.close(fd)
        self._touch(name)
        view = memoryview(buffer)
        mismatch = table.mismatch(first, view)
        if mismatch is not None:
            os.unlink(path)  # the next read fetches it again
            index, actual = mismatch
            raise ChecksumMismatch(chunk_id, index, path, table.get(index), actual)
        skip = offset - first * _BLOCK
        return bytes(view[skip : skip + length])

    def prefetch(self, chunk_id: int, version: int, table: ChecksumTable) -> None:
        """Fetch object `chunk_id`.`version` into the cache in the background, unless it is on its way,
        or read it ahead from the disk if cached: the readahead of a sequential reader, whose GETs then
        overlap."""
        name = object_name(chunk_id, version)
        fetched: concurrent.futures.Future[bytes] | None = None
        with self._lru_lock:
            cached = name in self._lru
            if not cached and name not in self._prefetching:
                fetched = concurrent.futures.Future()
                self._prefetching[name] = fetched
        if fetched is not None:
            self._prefetchers.submit(self._prefetch, chunk_id, version, table, fetched)
        elif cached:
            self._read_cache_ahead(name)

    def _read_cache_ahead(self, name: str) -> None:
        """Ask the kernel to start reading a cached object from the disk, without waiting for it (as
        BlockStore.prefetch does for a chunk file: otherwise each object starts with a wait)."""
        try:
            fd = os.open(os.path.join(self.cache_dir, name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # evicted meanwhile: a read fetches it again
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    def _prefetch(
        self, chunk_id: int, version: int, table: ChecksumTable, fetched: concurrent.futures.Future[bytes]
    ) -> None:
        """Fetch the object into `fetched`, where its readers find it at once, then into the cache: a
        reader never waits for the cache file to be written (~20 ms for 4 MiB on a loaded machine)."""
        name = object_name(chunk_id, version)
        try:
            if not fetched.set_running_or_notify_cancel():
                return
            self.cache_misses += 1  # a fetch, by a read or ahead of one (threads: a lost count is rounding)
            try:
                data = self._fetch(chunk_id, version, table.chunk_size, table)  # verified whole
            except BaseException as error:
                fetched.set_exception(error)
                return
            with self._lru_lock:
                self._held[name] = data
                if len(self._held) > HELD_OBJECTS:
                    self._held.popitem(last=False)
            fetched.set_result(data)
            self._cache(name, data)
        finally:
            with self._lru_lock:
                del self._prefetching[name]

    def _fetch_into_cache(self, chunk_id: int, version: int, table: ChecksumTable) -> bytes:
        self.cache_misses += 1
        data = self._fetch(chunk_id, version, table.chunk_size, table)  # verified whole
        self._cache(object_name(chunk_id, version), data)
        return data

    def _fetch(self, chunk_id: int, version: int, length: int, table: ChecksumTable) -> bytes:
        name = object_name(chunk_id, version)
        deadline = time.monotonic() + self._fetch_patience_s
        # Unlogged: a read that fails answers EIO, which the FUSE boundary logs in one line.
        data = self._retrying(None, lambda: self.objects.get(name), deadline=deadline)
        return verified_object(data, chunk_id, version, length, table)

    def _cache(self, name: str, data: bytes) -> None:
        # Written aside and renamed: a reader never sees half a cached object.  With O_DIRECT where the
        # filesystem takes it, as large chunk writes are: filling the page cache with it would cost more
        # CPU than the fetch (~20 ms per 4 MiB on a loaded machine here), and its reader has it already.
        fd, temporary = tempfile.mkstemp(dir=self.cache_dir, prefix=".fetch-")
        try:
            view = memoryview(data)
            try:
                direct = len(data) - len(data) % DIRECT_ALIGNMENT
                if not (direct and pwrite_direct(temporary, view[:direct], 0)):
                    direct = 0
                pwrite_all(fd, view[direct:], direct)  # the unaligned tail, or all of it
            finally:
                os.close(fd)
            os.rename(temporary, os.path.join(self.cache_dir, name))
        except BaseException:
            os.unlink(temporary)
            raise
        self._remember(name, len(data))
        self._evict(keep=name)

    def _remember(self, name: str, size: int) -> None:
        with self._lru_lock:
            self._cached_total += size - self._lru.pop(name, 0)
            self._lru[name] = size

    def _touch(self, name: str) -> None:
        with self._lru_lock:
            if name in self._lru:
                self._lru.move_to_end(name)

    def _evict(self, keep: str | None) -> None:
        """Remove least recently used cached objects until the cache fits its limit (but not `keep`,
        just fetched for a read)."""
        while True:
            with self._lru_lock:
                if self._cached_total <= self._cache_bytes or not self._lru:
                    return
                name, size = next(iter(self._lru.items()))
                if name == keep:
                    return
                del self._lru[name]
                self._cached_total -= size
            try:
                os.unlink(os.path.join(self.cache_dir, name))
            except FileNotFoundError:
                pass

    @property
    def cached_bytes(self) -> int:
        return self._cached_total

    def _retrying(self, what: str | None, request, *, deadline: float | None = None):  # type: ignore[no-untyped-def]
        """`request()`, retried with backoff while the object store fails (but not for a missing object)
        until `deadline` (default: the upload patience).  The first failure and the last of `what` are
        logged, one line each; none when `what` is None."""
        deadline = time.monotonic() + self.upload_patience_s if deadline is None else deadline
        pause = RETRY_FIRST_S
        while True:
            try:
                return request()
            except ObjectMissing:
                raise
            except ObjectStoreError as error:
                if time.monotonic() + pause > deadline:
                    if what is not None:
                        log.error("%s failed, giving up: %s", what, error)
                    raise
                if what is not None and pause == RETRY_FIRST_S:
                    log.warning("%s failed, retrying with backoff: %s", what, error)
                time.sleep(pause)
                pause = min(pause * 2, RETRY_LONGEST_S)
