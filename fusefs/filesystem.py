"""The composition root of a mounted filesystem: builds its parts, hands each the others it needs,
and runs its life cycle (start, background services, shutdown).  daemon.py mounts it; the tests of
tests/fusefs/ drive it without a mount.

    meta (metadata/meta.py) ── one entry point per operation, each its own transaction
    handles, open_files, lifecycle ── what only the FUSE layer knows
    ops (operations.py) ── the pyfuse3 adapter over all of them
    recovery, mount_session, services ── background work
"""

from __future__ import annotations

import os
from typing import Any

import trio

from blocks import BlockStore
from blocks.tier import ChunkTier
from fusefs.handles import HandleTable
from fusefs.lifecycle import InodeLifecycle
from fusefs.mount_session import MountSession
from fusefs.nscache import NamespaceCache
from fusefs.openfiles import OpenFiles
from fusefs.operations import FuseOperations, kernel_timeout_s
from fusefs.recovery import Recovery
from fusefs.recovery_gate import RecoveryGate
from fusefs.services import run_services
from fusefs.stats import COUNTERS
from fusefs.store_runner import StoreRunner
from metadata.meta import Meta
from metadata.model import FsConfig
from metadata.namespace import Namespace
from metadata.store import Store


class Filesystem:
    def __init__(
        self,
        store: Store,
        config: FsConfig,
        blocks: BlockStore,
        *,
        read_only: bool = False,
        strict: bool = False,
        writeback_cache: bool = False,
        tier: ChunkTier | None = None,
        acl: bool = False,
        provenance: bool = False,
    ) -> None:
        self.store = store
        self.blocks = blocks
        #: The object data tier (blocks/tier.py), if the filesystem has one.
        self.tier = tier
        self.read_only = read_only
        self.cache = NamespaceCache(
            kernel_timeout_s(shared=store.shared, strict=strict), hints=store.blocks_event_loop
        )
        self.runner = StoreRunner(store, cache=self.cache)
        self.meta = Meta(Namespace(config, session=os.urandom(8)), self.runner.run)
        gate = RecoveryGate(read_only=read_only)
        self.open_files = OpenFiles(
            self.meta,
            blocks,
            gate,
            store.sync,
            kernel_tracks_mtime=writeback_cache and not strict and not read_only,
            tier=tier,
        )
        self.lifecycle = InodeLifecycle(self.meta, blocks, self.open_files, read_only=read_only)
        self.ops = FuseOperations(
            self.meta,
            blocks,
            HandleTable(),
            self.open_files,
            self.lifecycle,
            store.sync,
            self.cache,
            shared=store.shared,
            read_only=read_only,
            strict=strict,
            writeback_cache=writeback_cache,
            acl=acl,
            provenance=provenance,
        )
        self.recovery = Recovery(
            self.meta, blocks, gate, self.lifecycle, self.open_files, shared=store.shared, tier=tier
        )
        self.mount_session = MountSession(self.meta, self.recovery.here)

    def stats(self) -> dict[str, Any]:
        """The daemon's counters (fusefs/stats.py) with this mount's open files and caches."""
        caches = {
            "chunk_fds": self.blocks.fd_cache_counts,
            "capability": (self.open_files.capability_hits, self.open_files.capability_misses),
            "namespace": (self.cache.hits, self.cache.misses),
        }
        if self.tier is not None:
            caches["object_cache"] = (self.tier.cache_hits, self.tier.cache_misses)
        return COUNTERS.snapshot(open_files=len(self.open_files), caches=caches)

    async def start(self, mountpoint: str) -> None:
        """Register this mount's session, before it serves: from then on its records are its own, and
        other mounts know it is alive.  What dead mounts left is recovered in the background
        (fusefs/recovery.py, started by ``run_services``), while requests are answered."""
        if not self.read_only:
            await self.mount_session.register(mountpoint)

    async def run_services(self) -> None:
        await run_services(
            self.meta,
            self.runner,
            self.blocks,
            self.open_files,
            self.lifecycle,
            self.recovery,
            self.mount_session,
            self.cache,
            read_only=self.read_only,
            tier=self.tier,
        )

    async def shutdown(self) -> None:
        """Flush open files and reclaim orphans: after unmount the kernel holds no inode any more."""
        try:
            await self.open_files.shutdown()
        finally:
            if self.tier is not None:
                self.tier.close()
        if not self.read_only:
            try:
                await self.lifecycle.reclaim(await self.meta.orphans())
            finally:
                # Whatever could not be done is this session's leftovers: the next mount recovers them.
                await self.mount_session.unregister()
        await trio.to_thread.run_sync(self.store.sync)
