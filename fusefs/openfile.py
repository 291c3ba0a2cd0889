"""The data of a regular file open in this mount, shared by every handle on it.

Small files (up to the filesystem's ``inline_max_bytes``) are held whole in memory while open and
written back inline into the metadata store, in one transaction, on flush/fsync/release.  Larger files
are cut into chunks: writes go straight to the chunk files (pwrite, no extra buffer; those over
``INLINE_IO_MAX_BYTES`` are written behind, fusefs/writebehind.py) and their checksum tables are
updated in memory; flush waits for the writes in flight, then records sizes and tables in one
transaction.  The transactions themselves are in metadata/content.py.

Crash consistency: before the first write to a chunk after a flush, the chunk is marked *dirty* in the
store; flush stores its new checksums and clears the mark.  A chunk still dirty at the next mount (the
daemon died mid-write) gets its checksums recomputed from the file, so it reads back as what the writes
left, never as a checksum error.  A new chunk's record commits before its file is written, so garbage
collection never removes a chunk file that a record will point to.

Data beyond a file's size may linger in the last chunk after a shrink; whenever the size grows again,
that tail is zeroed first (``_zero_tail``), so it never reappears.

Quotas: a write or truncate that would grow a file counted by a byte quota past what the quota has left
fails with EDQUOT before it changes anything, as on ext4.  What is left is read when the file first
grows past its stored size and kept, less what each flush commits; it is read again when a write would
exceed it, so space freed meanwhile is found.  Writers elsewhere may take what it counted on: the flush
(metadata/quota.py checks exactly) then fails with EDQUOT, and the file keeps its stored size, the
growth dropped and the writes inside it committed (see ``flush``).
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from blocks import CHECKSUM_BLOCK_BYTES, BlockStore, ChecksumMismatch, ChecksumTable
from blocks.tier import ChunkTier
from fusefs.accesses import HandleAccess
from fusefs.idpool import IdPool
from fusefs.quicklock import QuickLock
from fusefs.uploads import FileUploads, Staged
from fusefs.writebehind import WriteBehind
from metadata import content
from metadata.meta import Meta
from metadata.model import Caller, ChunkRecord, FSError, InodeAttr

log = logging.getLogger(__name__)

#: Chunk reads and writes up to this size run on the event loop: handing one to a worker thread costs
#: ~74 µs here (the thread sleeps between jobs and must be woken), more than a small pread or pwrite.
#: Larger reads go to a thread, so that other requests are served meanwhile; larger writes are written
#: behind (fusefs/writebehind.py).
INLINE_IO_MAX_BYTES = 128 * 1024
#: The room of a file that no byte quota limits.
_NO_LIMIT = 2**63

#: Chunks fetched ahead of a sequential reader from the object data tier (blocks/tier.py prefetch).
READAHEAD_CHUNKS = 8

T = TypeVar("T")


class OpenFile:
    def __init__(
        self,
        attr: InodeAttr,
        meta: Meta,
        blocks: BlockStore,
        chunk_ids: IdPool,
        sync_store: Callable[[], None],
        chunk_writer: concurrent.futures.Executor,
        *,
        kernel_tracks_mtime: bool,
        tier: ChunkTier | None = None,
    ) -> None:
        self.attr = attr
        self.refs = 0
        self._meta = meta
        self._blocks = blocks
        self._chunk_ids = chunk_ids
        self._sync_store = sync_store
        self._inline_max = meta.config.inline_max_bytes
        self._chunk_size = blocks.chunk_size
        # With the kernel's writeback cache, the kernel keeps mtime itself and sends it with setattr;
        # writes arriving later (at close) must not overwrite it.
        self._kernel_tracks_mtime = kernel_tracks_mtime
        self._lock = QuickLock()
        self._behind = WriteBehind(chunk_writer)
        #: The object data tier, if the filesystem has one (blocks/tier.py): chunks are uploaded when
        #: sealed (fusefs/uploads.py), and chunks this host does not hold are read from it.
        self._tier = tier
        self._uploads = None if tier is None else FileUploads(tier, self._chunk_size)
        #: The store said this file has no security.capability xattr (see FuseOperations.getxattr).
        self.known_without_capability = False
        self._loaded = False
        self._stale = False
        self._inline: bytearray | None = None
        self._chunks: dict[int, ChunkRecord] = {}
        self._tables: dict[int, ChecksumTable] = {}
        self._stored_size = attr.size
        self._stored_chunked = attr.chunked
        self._dirty = False
        self._next_read = 0  # where a sequential reader reads next (readahead)
        self._dirty_chunks: set[int] = set()  # marked dirty in the store, tables not yet committed
        self._unsynced_chunks: set[int] = set()  # written since the last fsync
        #: Bytes the file may grow past its stored size before a byte quota is exceeded; None: not read.
        self._quota_room: int | None = None
        self._prefetched = -1  # the last chunk whose file was asked for ahead of a sequential reader
        self._ahead = range(0)  # the chunks whose objects were last asked for ahead of a sequential reader
        # Chunks served by the object tier: one whose file is not on this host never gets one here (only
        # the host that took a chunk id writes its file), so the check is made once per chunk.
        self._remote: set[int] = set()
        self.caller = Caller(uid=attr.uid, gid=attr.gid)

    @property
    def ino(self) -> int:
        return self.attr.ino

    # -- loading ------------------------------------------------------------------------------------
    async def _load(self) -> None:
        if self._loaded:
            return
        if self._stale:
            self.attr = await self._meta.getattr(self.ino)
            self._stored_size, self._stored_chunked = self.attr.size, self.attr.chunked
            self._stale = False
        if self.attr.chunked:
            records = await self._meta.read_chunks(self.ino)
            covered = -(-self.attr.size // self._chunk_size)
            if any(index >= covered and not record.dirty for index, record in records.items()):
                await self._drop_stale_chunks()
                records = {index: record for index, record in records.items() if index < covered}
            self._chunks = records
            self._tables = {i: ChecksumTable(self._chunk_size, r.checksums) for i, r in records.items()}
        else:
            data = await self._meta.read_inline(self.ino, self.attr.size)
            self._inline = bytearray(data)
        self._loaded = True

    def start_new(self) -> None:
        """For a file created just now: there is no stored data to load, and it has no xattrs."""
        self._inline = bytearray()
        self._loaded = True
        self.known_without_capability = True

    def invalidate(self) -> None:
        """Drop cached data so the next access reloads it from the store (unless writes are pending)."""
        if not self._dirty and not self._lock.locked():
            self._loaded = False
            self._stale = True
            self._quota_room = None
            self._inline = None
            self._chunks = {}
            self._tables = {}

    # -- reading ------------------------------------------------------------------------------------
    async def read(self, offset: int, size: int) -> bytes:
        async with self._lock:
            await self._load()
            end = min(offset + size, self.attr.size)
            if offset >= end:
                return b""
            if self._inline is not None:
                return bytes(self._inline[offset:end])
            return await self._read_chunks(offset, end)

    async def _read_chunks(self, offset: int, end: int) -> bytes:
        parts = []
        sequential, self._next_read = offset in (0, self._next_read), end
        if sequential:
            self._prefetch_next_chunk(end)
        for index, chunk_offset, length in self._pieces(offset, end - offset):
            record = self._chunks.get(index)
            if record is None:
                parts.append(bytes(length))  # a hole
                continue
            try:
                if self._from_object(record):
                    piece = await self._read_object(index, record, chunk_offset, length, sequential)
                else:
                    piece = await self._block_io(
                        length,
                        self._blocks.read,
                        record.dir_index,
                        record.chunk_id,
                        chunk_offset,
                        length,
                        self._tables[index],
                    )
                parts.append(piece)
            except ChecksumMismatch as error:
                log.error("inode %d, chunk %d (index %d): %s", self.ino, record.chunk_id, index, error)
                raise
        return b"".join(parts)

    async def _read_object(
        self, index: int, record: ChunkRecord, offset: int, length: int, sequential: bool
    ) -> bytes:
        """A piece of a chunk served by the object tier: a small read of a cached object on the event
        loop, as a small read of a chunk file; a fetch from the object store in a thread."""
        assert self._tier is not None
        await self._behind.drain()
        if sequential:
            self._read_ahead(index)
        where = (record.chunk_id, record.version, offset, length, self._tables[index])
        if length <= INLINE_IO_MAX_BYTES:
            piece = self._tier.read_cached(*where)
            if piece is not None:
                return piece
        return await trio.to_thread.run_sync(self._tier.read, *where)

    def _read_ahead(self, index: int) -> None:
        """Start fetching the chunks after `index` that come from the object store, or reading them from
        the cache directory's disk (each once: a sequential reader's other reads would find them on
        their way)."""
        assert self._tier is not None
        wanted, asked = range(index + 1, index + 1 + READAHEAD_CHUNKS), self._ahead
        self._ahead = wanted
        for ahead in wanted:
            record = None if ahead in asked else self._chunks.get(ahead)
            if record is not None and self._from_object(record):
                self._tier.prefetch(record.chunk_id, record.version, self._tables[ahead])

    def _prefetch_next_chunk(self, end: int) -> None:
        """A sequential reader in chunk i will want chunk i + 1: its file is read ahead from the disk while
        this chunk is served, instead of each new chunk file starting with a wait for the disk."""
        index = (end - 1) // self._chunk_size + 1
        record = self._chunks.get(index)
        if index == self._prefetched or record is None or self._from_object(record):
            return
        self._prefetched = index
        length = min(self._chunk_size, self.attr.size - index * self._chunk_size)
        self._blocks.prefetch(record.dir_index, record.chunk_id, 0, length)

    def _pieces(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(chunk index, offset in chunk, length) of each chunk that [offset, offset+length) touches."""
        pieces = []
        end = offset + length
        while offset < end:
            index, chunk_offset = divmod(offset, self._chunk_size)
            n = min(self._chunk_size - chunk_offset, end - offset)
            pieces.append((index, chunk_offset, n))
            offset += n
        return pieces

    # -- writing ------------------------------------------------------------------------------------
    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int:
        """Write ``data`` at ``offset``, or at the end of the file when ``append`` (O_APPEND): the end
        is read under the lock, since a concurrent write may move it while this one waits."""
        async with self._lock:
            await self._load()
            if append:
                offset = self.attr.size
            end = offset + len(data)
            await self._check_quota(end)
            if self._inline is not None and end <= self._inline_max:
                if offset > len(self._inline):
                    self._inline.extend(bytes(offset - len(self._inline)))
                self._inline[offset:end] = data
            else:
                await self._make_chunked()
                if offset > self.attr.size:
                    await self._zero_tail(offset)
                await self._write_chunks(offset, data)
            self._grow(end)
            if not self._kernel_tracks_mtime:
                self.attr.touch(mtime=True)
            self._dirty = True
            return len(data)

    def _grow(self, end: int) -> None:
        if end > self.attr.size:
            self.attr.size = end

    async def _check_quota(self, new_size: int) -> None:
        """EDQUOT if growing the file to ``new_size`` would exceed a byte quota counting it."""
        growth = new_size - self._stored_size
        if not self.attr.quota_charged or growth <= 0:
            return
        if self._quota_room is None or growth > self._quota_room:
            room = await self._meta.quota_room(self.ino)
            self._quota_room = _NO_LIMIT if room is None else room
        if growth > self._quota_room:
            raise FSError(errno.EDQUOT)

    async def _make_chunked(self) -> None:
        """Move an inline file's data into chunks (the store learns at the next flush)."""
        if self._inline is None:
            return
        if not self._stored_chunked:
            await self._drop_stale_chunks()
        data, self._inline = bytes(self._inline), None
        self.attr.chunked = True
        if data:
            await self._write_chunks(0, data)

    async def _drop_stale_chunks(self) -> None:
        """Remove chunk records (and their files) that the stored size does not cover.

        A daemon killed after writing chunks past a file's recorded size (or while moving an inline file
        to chunks) leaves their records behind, clean once recovery has rebuilt their checksums.  Kept,
        they would reappear as data when the file grows over them (instead of zeros), and a new record at
        the same index would orphan their files for good (their owner keys stay, so gc keeps them).
        Records still marked dirty may belong to a writer on another mount: then nothing is dropped."""
        if not await self._meta.has_stale_chunks(self.ino):
            return
        stale = await self._meta.drop_stale_chunks(self.ino)
        for record in stale:
            await trio.to_thread.run_sync(self._blocks.delete, record.dir_index, record.chunk_id)
        if stale:
            log.info(
                "inode %d: dropped %d chunk(s) past its recorded size, left by an interrupted write",
                self.ino,
                len(stale),
            )

    def _from_object(self, record: ChunkRecord) -> bool:
        """Whether a chunk is served by the object tier: uploaded, and its file not on this host."""
        if self._tier is None or record.version == 0:
            return False
        if record.chunk_id in self._remote:
            return True
        if self._tier.is_local(record.dir_index, record.chunk_id):
            return False
        self._remote.add(record.chunk_id)
        return True

    async def _chunk_for_write(self, index: int) -> ChunkRecord:
        if self._uploads is not None:
            await self._uploads.before_write(index, self._staged, self._behind.last)
        record = self._chunks.get(index)
        if record is None:
            record = ChunkRecord(await self._chunk_ids.take(), self._blocks.choose_directory())
            self._tables[index] = ChecksumTable(self._chunk_size)
            self._chunks[index] = record
            if index not in self._dirty_chunks:
                await self._meta.mark_dirty(self.ino, index, record, False)  # a new chunk is never shared
        elif index not in self._dirty_chunks:
            # Another host's chunk of the data tier, or one shared with a clone, is never written here.
            if self._from_object(record) or not await self._meta.mark_dirty(self.ino, index, record, True):
                record = await self._copy_chunk(index, record)
        self._dirty_chunks.add(index)
        return record

    async def _copy_chunk(self, index: int, old: ChunkRecord) -> ChunkRecord:
        """Copy-on-write: the bytes of chunk ``old`` are copied into a new chunk of this host, which takes
        its place in this file only (``Meta.unshare`` releases ``old``).  ``old`` is either shared
        with a clone (metadata/clone.py), or, with a data tier, written by another host (its file is
        there, its object here: blocks/tier.py).

        The copy is recorded (dirty, in place of ``old``) before its file is written, as for every new
        chunk, so gc never deletes it.  A crash during the copy leaves a dirty chunk that recovery
        rebuilds from what the copy wrote: that chunk of this file may then read back partly as zeros
        (the other copies keep the shared chunk intact).  On a data tier the copy is first uploaded as
        the new chunk's first object, which its record points at until the next flush uploads more,
        whatever happens to this host meanwhile."""
        record = ChunkRecord(await self._chunk_ids.take(), self._blocks.choose_directory())
        old_table = self._tables[index]
        if self._from_object(old):
            assert self._tier is not None
            length = min(self._chunk_size, max(0, self._stored_size - index * self._chunk_size))
            record.version, data = await trio.to_thread.run_sync(
                self._tier.copy, old.chunk_id, old.version, length, old_table, record.chunk_id
            )
            record.checksums = old_table.to_bytes()
        else:
            length = len(old_table.to_bytes()) // 4 * CHECKSUM_BLOCK_BYTES  # up to its last data
            data = await trio.to_thread.run_sync(
                self._blocks.read, old.dir_index, old.chunk_id, 0, length, old_table
            )
        if not await self._meta.unshare(self.ino, index, old.chunk_id, record):
            raise FSError(errno.EIO, f"inode {self.ino}: chunk {index} changed under a copy-on-write")
        table = ChecksumTable(self._chunk_size)
        await trio.to_thread.run_sync(self._blocks.write, record.dir_index, record.chunk_id, 0, data, table)
        self._chunks[index] = record
        self._tables[index] = table
        return record

    async def _write_chunks(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        position = 0
        for index, chunk_offset, length in self._pieces(offset, len(data)):
            record = await self._chunk_for_write(index)
            piece = view[position : position + length]
            args = (record.dir_index, record.chunk_id, chunk_offset, piece, self._tables[index])
            if length > INLINE_IO_MAX_BYTES:
                await self._behind.submit(length, self._blocks.write, *args)
            else:
                await self._block_io(length, self._blocks.write, *args)
            self._unsynced_chunks.add(index)
            position += length
            if self._uploads is not None and chunk_offset + length == self._chunk_size:
                # Full: a sequential writer has moved on, so its upload starts now, in the background.
                full = Staged(record, self._chunk_size, self._tables[index])
                self._uploads.seal(index, full, self._behind.last)

    async def _zero_tail(self, new_size: int) -> None:
        """Zero what may linger past the current size in its chunk, up to ``new_size``."""
        size = self.attr.size
        index, chunk_offset = divmod(size, self._chunk_size)
        record = self._chunks.get(index)
        if record is None or chunk_offset == 0:
            return
        length = min(self._chunk_size - chunk_offset, new_size - size)
        await self._chunk_for_write(index)
        await self._block_io(
            length,
            self._blocks.punch,
            record.dir_index,
            record.chunk_id,
            chunk_offset,
            length,
            self._tables[index],
        )

    async def _block_io(self, length: int, fn: Callable[..., T], *args: Any) -> T:
        """Chunk I/O after the writes in flight: on the event loop when small, else in a thread."""
        await self._behind.drain()
        if length <= INLINE_IO_MAX_BYTES:
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args)

    async def truncate(self, new_size: int) -> None:
        """Set the size; the chunks cut off are dropped, and their files deleted, by the next flush
        (not the files of chunks a clone shares)."""
        async with self._lock:
            await self._load()
            await self._check_quota(new_size)
            await self._resize(new_size)

    async def _resize(self, new_size: int) -> None:
        await self._behind.drain()  # writes in flight may target chunks cut off here
        if self._inline is not None and new_size <= self._inline_max:
            del self._inline[new_size:]
            self._inline.extend(bytes(new_size - len(self._inline)))
        else:
            await self._make_chunked()
            if new_size > self.attr.size:
                await self._zero_tail(new_size)
            else:
                first_dropped = -(-new_size // self._chunk_size)
                for index in [i for i in self._chunks if i >= first_dropped]:
                    self._chunks.pop(index)
                    self._tables.pop(index)
                    self._dirty_chunks.discard(index)
                    self._unsynced_chunks.discard(index)
                    if self._uploads is not None:
                        self._uploads.drop(index)
        self.attr.size = new_size
        if not self._kernel_tracks_mtime:
            self.attr.touch(mtime=True)  # even when the size stays: POSIX, for O_TRUNC
        self._dirty = True

    async def count_allocated(self) -> None:
        """Bring ``attr.allocated`` (st_blocks) up to the data written so far, flushed or not, as ext4
        counts delayed allocations.  Waits for the writes in flight; an error of theirs stays for the
        next write, flush or fsync to report."""
        async with self._lock:
            if self._inline is None and self.attr.chunked:
                await self._behind.settle()
                self.attr.allocated = self._allocated_bytes()

    def _allocated_bytes(self) -> int:
        return sum(table.allocated_bytes() for table in self._tables.values())

    # -- flushing -----------------------------------------------------------------------------------
    @property
    def has_unflushed_writes(self) -> bool:
        return self._dirty

    def set_times(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        """Times set while writes are pending (the kernel's writeback cache sends them just before the
        data): recorded with the data at the next flush, saving a transaction per file."""
        if atime_ns is not None:
            self.attr.atime_ns = atime_ns
        if mtime_ns is not None:
            self.attr.mtime_ns = mtime_ns
        self._dirty = True

    async def flush(self, caller: Caller | None = None, access: HandleAccess | None = None) -> None:
        """Record the data written since the last flush; with ``access``, write that handle's provenance
        record in the same transaction (if there is one)."""
        async with self._lock:
            if not self._dirty:
                return
            await self._behind.drain()  # the checksum tables are complete only then
            try:
                await self._commit(caller or self.caller, access)
            except FSError as error:
                if error.errno != errno.EDQUOT:
                    raise
                # Writers elsewhere took the quota's room since this file last grew.  Writes inside the
                # stored size went in place into chunk files, whose stored checksums they no longer
                # match: they are committed without the growth, which is dropped, and EDQUOT reported.
                await self._resize(self._stored_size)
                await self._commit(caller or self.caller, access)
                raise

    async def _commit(self, caller: Caller, access: HandleAccess | None) -> None:
        if self._uploads is not None and self.attr.chunked:
            await self._upload_dirty_chunks()
        change = self._flush_change(caller)
        if access is not None:
            change.access = access.stamped()
        freed = await self._meta.flush(change)
        if access is not None:
            access.written()
        for record in freed:  # cut off by a truncate; after the commit, so no record points at them
            await trio.to_thread.run_sync(self._blocks.delete, record.dir_index, record.chunk_id)
        if self._quota_room is not None:
            self._quota_room -= self.attr.size - self._stored_size
        self._stored_size = self.attr.size
        self._stored_chunked = self.attr.chunked
        self._dirty_chunks.clear()
        self._dirty = False

    async def _upload_dirty_chunks(self) -> None:
        """Upload every chunk written since the last flush (those sealed already are waited for): the
        flush then records the new versions with the data (close-to-open consistency)."""
        assert self._uploads is not None
        chunks = {index: self._staged(index) for index in self._dirty_chunks if index in self._chunks}
        await self._uploads.upload(chunks)

    def _staged(self, index: int) -> Staged:
        """Chunk `index` as it stands, for its upload: up to the file's size (none of it if a write
        staged it but failed before the chunk was made)."""
        if index not in self._chunks:
            return Staged(ChunkRecord(0, 0), 0, ChecksumTable(self._chunk_size))
        length = min(self._chunk_size, self.attr.size - index * self._chunk_size)
        return Staged(self._chunks[index], length, self._tables[index])

    def release_staging(self) -> None:
        """Give back the staging room of chunks left unuploaded by a failed flush (the file is no longer
        open here: they stay dirty for the recovery of this mount's session)."""
        if self._uploads is not None:
            self._uploads.release_all()

    def _flush_change(self, caller: Caller) -> content.Flush:
        """What the flush transaction records: the data fields, and the new checksum tables of the
        chunks written since the last flush."""
        chunks: dict[int, ChunkRecord] = {}
        if self.attr.chunked:
            self.attr.allocated = self._allocated_bytes()
            for index in self._dirty_chunks:
                record = self._chunks.get(index)
                if record is not None:
                    record.checksums = self._tables[index].to_bytes()
                    chunks[index] = record
        return content.Flush(
            ino=self.ino,
            size=self.attr.size,
            atime_ns=self.attr.atime_ns,
            mtime_ns=self.attr.mtime_ns,
            inline=None if self._inline is None else bytes(self._inline),
            chunks=chunks,
            allocated=self.attr.allocated,
            stored_size=self._stored_size,
            stored_chunked=self._stored_chunked,
            caller=caller,
        )

    async def fsync(self) -> None:
        """Flush, then make the chunk files and the store durable."""
        await self.flush()
        async with self._lock:
            for index in sorted(self._unsynced_chunks):
                record = self._chunks.get(index)
                if record is not None:
                    await trio.to_thread.run_sync(self._blocks.fsync, record.dir_index, record.chunk_id)
            self._unsynced_chunks.clear()
        await trio.to_thread.run_sync(self._sync_store)
