"""The open-file table: one ``OpenFile`` per inode that any handle has open, shared by its handles."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

from blocks import BlockStore
from blocks.tier import ChunkTier
from fusefs.idpool import IdPool
from fusefs.openfile import OpenFile
from fusefs.recovery_gate import RecoveryGate
from metadata.meta import Meta
from metadata.model import InodeAttr


class OpenFiles:
    def __init__(
        self,
        meta: Meta,
        blocks: BlockStore,
        recovery_gate: RecoveryGate,
        sync_store: Callable[[], None],
        *,
        kernel_tracks_mtime: bool,
        tier: ChunkTier | None = None,
    ) -> None:
        self._meta = meta
        self._tier = tier
        self._blocks = blocks
        self._recovery_gate = recovery_gate
        self._sync_store = sync_store
        self._kernel_tracks_mtime = kernel_tracks_mtime
        self._chunk_ids = IdPool(meta, "chunk")
        # Large chunk writes, written behind (fusefs/writebehind.py); one thread keeps them in order.
        self._chunk_writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chunk-writer")
        self._files: dict[int, OpenFile] = {}
        #: security.capability questions answered from memory, and those the store answered.
        self.capability_hits = 0
        self.capability_misses = 0

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, ino: int) -> bool:
        return ino in self._files

    def get(self, ino: int) -> OpenFile | None:
        return self._files.get(ino)

    async def open(self, ino: int, known: InodeAttr | None = None) -> OpenFile:
        """The open file of ``ino`` with one more reference; ``known`` saves reading its attributes."""
        open_file = self._files.get(ino)
        if open_file is None:
            # Never load a checksum table that recovery is about to rebuild (fusefs/recovery.py).
            await self._recovery_gate.wait_for(ino)
            open_file = self._files.get(ino)
        if open_file is None:
            attr = known if known is not None else await self._meta.getattr(ino)
            # Another open may have made it while the store was read (transactions in worker threads):
            # two open files of one inode would each write back their own copy of its data.
            open_file = self._files.get(ino)
            if open_file is None:
                open_file = OpenFile(
                    attr,
                    self._meta,
                    self._blocks,
                    self._chunk_ids,
                    self._sync_store,
                    self._chunk_writer,
                    kernel_tracks_mtime=self._kernel_tracks_mtime,
                    tier=self._tier,
                )
                self._files[ino] = open_file
        open_file.refs += 1
        return open_file

    async def close(self, open_file: OpenFile) -> bool:
        """Flush and drop one reference; True when that was the last (the inode is no longer open)."""
        # The reference is dropped after the flush: an open meanwhile must find this open file (whose
        # data may not be in the store yet), not load a stale copy of its own.
        try:
            await open_file.flush()
        finally:
            open_file.refs -= 1
            last = open_file.refs == 0 and self._files.get(open_file.ino) is open_file
            if last:
                del self._files[open_file.ino]
                open_file.release_staging()
        return last

    def known_without_capability(self, ino: int) -> bool:
        """Whether the store already said that ``ino``, open here, has no security.capability xattr:
        the kernel asks before every write(2) (see FuseOperations.getxattr)."""
        open_file = self._files.get(ino)
        if open_file is not None and open_file.known_without_capability:
            self.capability_hits += 1
            return True
        self.capability_misses += 1
        return False

    def remember_without_capability(self, ino: int) -> None:
        open_file = self._files.get(ino)
        if open_file is not None:
            open_file.known_without_capability = True

    def forget_capability_answer(self, ino: int) -> None:
        open_file = self._files.get(ino)
        if open_file is not None:
            open_file.known_without_capability = False

    def forget_cached_data(self, ino: int) -> None:
        """Another mount changed ``ino``: reload its data at next use unless we hold unflushed writes."""
        open_file = self._files.get(ino)
        if open_file is not None:
            open_file.invalidate()
        self.forget_capability_answer(ino)

    async def shutdown(self) -> None:
        """Flush every open file and stop the chunk writer (at unmount)."""
        try:
            for open_file in list(self._files.values()):
                await open_file.flush()
        finally:
            self._chunk_writer.shutdown(wait=True)
