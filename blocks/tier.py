"""Chunks over the object data tier: the local block directories stage writes and cache reads.

A chunk written on this host lives in a chunk file of the local BlockStore (the staging area); when it is
sealed (the file is closed or fsynced) its bytes become a new immutable object, ``<chunk id>.<version>``,
and the chunk record points at that version in the same transaction that makes the data visible.

Chunk ids are allocated once, store-wide, and only the host that allocated one ever writes its chunk
file; a host that writes a chunk it does not hold locally takes a new chunk id filled from the object
(``fill``), so a local chunk file is never an older version than the record it serves.  Chunks other
hosts wrote are fetched whole into a cache directory under the name of their version, so a cached file
is never served for another version.  Every read, from the object store or from the cache, is checked
against the chunk's crc table (blocks/checksums.py) recorded with it.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time

from .checksums import CHECKSUM_BLOCK_BYTES, ChecksumTable, block_count, block_crc
from .errors import ChecksumMismatch
from .fileio import pread_into
from .objects import ObjectMissing, ObjectStore, ObjectStoreError, object_name
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


def new_version() -> int:
    """A version number for a new object of a chunk: random, so hosts never collide without asking."""
    return secrets.randbits(63) | 1


class ChunkTier:
    """The object tier of one filesystem on this host: `objects`, staged through `blocks`, cached in
    ``CACHE_DIR_NAME`` of its first block directory.  Synchronous: run the methods in threads."""

    def __init__(self, objects: ObjectStore, blocks: BlockStore) -> None:
        self.objects = objects
        self._blocks = blocks
        self.cache_dir = os.path.join(blocks.directories[0], CACHE_DIR_NAME)
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)

    def is_local(self, dir_index: int, chunk_id: int) -> bool:
        """Whether this host holds the chunk file (it allocated the chunk id and wrote it)."""
        if not 0 <= dir_index < len(self._blocks.directories):
            return False
        return os.path.exists(self._blocks.path(dir_index, chunk_id))

    # -- writing --------------------------------------------------------------------------------------
    def upload(self, dir_index: int, chunk_id: int, length: int, table: ChecksumTable) -> int:
        """Seal the first `length` bytes of a staged chunk as a new object; returns its version."""
        data = self._blocks.read(dir_index, chunk_id, 0, length, table)
        version = new_version()
        self._retrying(
            f"upload of chunk {chunk_id}", lambda: self.objects.put(object_name(chunk_id, version), data)
        )
        return version

    def fill(
        self, chunk_id: int, version: int, length: int, table: ChecksumTable, dir_index: int, new_id: int
    ) -> None:
        """Stage object `chunk_id`.`version` (first `length` bytes) as the new local chunk `new_id`:
        ``table`` is checked against the fetched data, then describes the new chunk file too."""
        data = self._fetch(chunk_id, version, length, table)
        self._blocks.write(dir_index, new_id, 0, data, table)

    # -- reading --------------------------------------------------------------------------------------
    def read(self, chunk_id: int, version: int, offset: int, length: int, table: ChecksumTable) -> bytes:
        """Bytes of object `chunk_id`.`version`, from the cache, fetched whole into it on a miss."""
        path = os.path.join(self.cache_dir, object_name(chunk_id, version))
        first, stop = offset // _BLOCK, block_count(offset + length)
        buffer = bytearray((stop - first) * _BLOCK)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._cache(path, self._fetch(chunk_id, version, table.chunk_size, table))
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pread_into(fd, buffer, first * _BLOCK)
        finally:
            os.close(fd)
        view = memoryview(buffer)
        for index in range(first, stop):
            actual = block_crc(view[(index - first) * _BLOCK : (index - first + 1) * _BLOCK])
            if actual != table.get(index):
                os.unlink(path)  # the next read fetches it again
                raise ChecksumMismatch(chunk_id, index, path, table.get(index), actual)
        skip = offset - first * _BLOCK
        return bytes(view[skip : skip + length])

    def _fetch(self, chunk_id: int, version: int, length: int, table: ChecksumTable) -> bytes:
        name = object_name(chunk_id, version)
        deadline = time.monotonic() + FETCH_PATIENCE_S
        data = self._retrying(f"fetch of {name}", lambda: self.objects.get(name), deadline=deadline)
        data = data[:length]
        for index in range(block_count(table.chunk_size)):
            actual = block_crc(data[index * _BLOCK : (index + 1) * _BLOCK])
            if actual != table.get(index):
                raise ChecksumMismatch(chunk_id, index, f"object {name}", table.get(index), actual)
        return data

    def _cache(self, path: str, data: bytes) -> None:
        # Written aside and renamed: a reader never sees half a cached object.
        fd, temporary = tempfile.mkstemp(dir=self.cache_dir, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.rename(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise

    @staticmethod
    def _retrying(what: str, request, *, deadline: float | None = None):  # type: ignore[no-untyped-def]
        """`request()`, retried with backoff while the object store fails (but not for a missing object)
        until `deadline` (default: the upload patience)."""
        deadline = time.monotonic() + UPLOAD_PATIENCE_S if deadline is None else deadline
        pause = RETRY_FIRST_S
        while True:
            try:
                return request()
            except ObjectMissing:
                raise
            except ObjectStoreError as error:
                if time.monotonic() + pause > deadline:
                    log.error("%s failed, giving up: %s", what, error)
                    raise
                log.warning("%s failed, retrying in %.1f s: %s", what, pause, error)
                time.sleep(pause)
                pause = min(pause * 2, RETRY_LONGEST_S)
