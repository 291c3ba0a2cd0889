"""The inode life cycle: the kernel's lookup counts, orphans, and their reclaim.

An inode that lost its last name (an orphan) lives on while the kernel has it looked up or a handle
has it open, as on a local disk; once both let go it is queued and deleted in batches by the background
task ``reclaim_queued``.  Chunk files of reclaimed or truncated data are deleted only after the
transaction that dropped their records commits, so a crash leaves garbage for gc, never a record
pointing at a missing file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import trio

from blocks import BlockStore
from fusefs.openfiles import OpenFiles
from metadata.meta import Meta
from metadata.model import ChunkRecord, Removal

#: Orphans are deleted this long after the first of a batch is queued, at most this many per transaction.
RECLAIM_GATHER_S = 0.005
RECLAIM_BATCH = 256


class InodeLifecycle:
    def __init__(self, meta: Meta, blocks: BlockStore, open_files: OpenFiles, *, read_only: bool) -> None:
        self._meta = meta
        self._blocks = blocks
        self._open_files = open_files
        self._read_only = read_only
        self.lookups: Counter[int] = Counter()
        #: Inodes without a name that the kernel or a handle still holds; queued when both let go.
        self._orphans: set[int] = set()
        #: Orphans nobody holds any more, waiting for ``reclaim_queued``.
        self._reclaimable: set[int] = set()
        self._reclaimable_queued = trio.Event()

    def still_open(self, ino: int) -> bool:
        """Whether a handle or the kernel holds ``ino``: a file the kernel has looked up may still be
        opened by a path walk that found it before it lost its last name (as on a local disk)."""
        return ino in self._open_files or self.lookups.get(ino, 0) > 0

    def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        """The kernel dropped ``count`` lookups of each inode."""
        for ino, count in inode_list:
            left = self.lookups[ino] - count
            if left > 0:
                self.lookups[ino] = left
                continue
            self.lookups.pop(ino, None)
            if ino in self._orphans:
                self.queue_if_unused(ino)

    async def after_removal(self, removal: Removal | None) -> None:
        if removal is not None and removal.freed_chunks:
            await self.delete_chunk_files(removal.freed_chunks)
        if removal is not None and removal.is_orphan:
            self._orphans.add(removal.attr.ino)
            self.queue_if_unused(removal.attr.ino)

    def queue_if_unused(self, ino: int) -> None:
        """Queue an orphan for deletion once the kernel has forgotten it and no handle has it open.

        Deleting waits for the background task ``reclaim_queued``: an ``rm -rf`` makes the kernel
        forget one inode per unlink, and one transaction per batch costs far less than one each."""
        if self.still_open(ino) or self._read_only:
            return
        self._orphans.discard(ino)
        self._reclaimable.add(ino)
        self._reclaimable_queued.set()

    async def reclaim_queued(self) -> None:
        """Wait for queued orphans, give more a moment to gather, then delete them, batch by batch."""
        await self._reclaimable_queued.wait()
        self._reclaimable_queued = trio.Event()
        await trio.sleep(RECLAIM_GATHER_S)
        while self._reclaimable:
            batch = [self._reclaimable.pop() for _ in range(min(RECLAIM_BATCH, len(self._reclaimable)))]
            # Shielded: an unmount must not cut a batch between its transaction and the deletion of
            # its chunk files, which would leave files no record owns until the next gc.
            with trio.CancelScope(shield=True):
                await self.reclaim(batch)

    async def reclaim(self, inos: list[int], session: bytes | None = None) -> None:
        for start in range(0, len(inos), RECLAIM_BATCH):
            chunks = await self._meta.reclaim(inos[start : start + RECLAIM_BATCH], session)
            await self.delete_chunk_files(chunks)

    async def reclaim_orphans_of(self, session: bytes, inos: list[int]) -> None:
        """Reclaim orphans a dead session left (those it still owns: see ``Namespace.reclaim``)."""
        with trio.CancelScope(shield=True):  # as in ``reclaim_queued``: no chunk file left unowned
            await self.reclaim(inos, session)

    async def delete_chunk_files(self, chunks: list[ChunkRecord]) -> None:
        for record in chunks:
            await trio.to_thread.run_sync(self._blocks.delete, record.dir_index, record.chunk_id)
