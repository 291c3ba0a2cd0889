"""Recovery of dead mounts' leftovers, in the background of a live read-write mount.

A pass (at mount, then every ``RECOVERY_INTERVAL_S``) lists every session's leftovers, claims each dead
session (metadata/sessions.py), and then, per claimed session: rebuilds the checksums of its dirty
chunks from the bytes on disk, drops chunk records beyond the size of the files it was writing, and
reclaims its orphans.  Rebuilding may read GiBs, so the mount answers meanwhile; a file whose chunks are
still being rebuilt is opened only once they are (``wait_for``), so no read ever meets a stale checksum
table, and opens wait for the first pass to have listed what it will rebuild.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from metadata import recovery, sessions
from metadata.model import ChunkRecord, now_ns
from metadata.recovery import Leftovers

if TYPE_CHECKING:
    from fusefs.operations import FuseOperations

log = logging.getLogger(__name__)

RECOVERY_INTERVAL_S = 30.0
RECOVERY_INTERVAL_ENV = "FUSEFS_RECOVERY_INTERVAL_S"


class Recovery:
    def __init__(self, ops: FuseOperations) -> None:
        self._ops = ops
        self.here = sessions.this_process()
        #: Set once the first pass knows which files it will rebuild (at once for a read-only mount).
        self._listed = trio.Event()
        if ops.read_only:
            self._listed.set()
        #: Inodes with chunks waiting to be rebuilt: opening one waits for its event.
        self._pending: dict[int, trio.Event] = {}

    async def wait_for(self, ino: int) -> None:
        """Return once ``ino`` has no chunk waiting for recovery (no checkpoint when none is)."""
        if not self._listed.is_set():
            await self._listed.wait()
        pending = self._pending.get(ino)
        if pending is not None:
            await pending.wait()

    async def run_pass(self) -> None:
        ops = self._ops
        keys = ops.ns.keys
        own = ops.ns.session
        try:
            known = await ops.runner.run(sessions.list_sessions, keys)
            left = await ops.runner.run(recovery.leftovers, keys)
            victims = sessions.to_recover(
                known,
                left,
                own,
                sole_owner=not ops.store.shared,
                now_ns=now_ns(),
                timeout_s=sessions.timeout_s(),
                here=self.here,
            )
            claimed: dict[bytes, Leftovers] = {}
            for victim, take_over_from in victims:
                if await ops.runner.run(sessions.claim, keys, victim, own, now_ns(), take_over_from):
                    claimed[victim] = left.get(victim, Leftovers())
                    log.warning("recovering dead session %s", _describe(victim, known))
            # Per file, the chunks of every claimed session (two dead mounts may have written one file).
            files: dict[int, list[tuple[bytes, list[int]]]] = {}
            for victim, found in claimed.items():
                for ino, indexes in found.dirty.items():
                    files.setdefault(ino, []).append((victim, indexes))
                    self._pending.setdefault(ino, trio.Event())
        finally:
            self._listed.set()
        for ino, parts in files.items():
            try:
                await self._recover_file(ino, parts, own)
            finally:
                self._pending.pop(ino, trio.Event()).set()
        for victim, found in claimed.items():
            if found.orphans:
                await ops.reclaim_orphans_of(victim, found.orphans)
            await ops.runner.run(sessions.release, keys, victim, own)
            log.info(
                "session %s recovered: %d file(s) with chunks caught mid-write, %d orphan(s) reclaimed",
                victim.hex() or "(before sessions)",
                len(found.dirty),
                len(found.orphans),
            )

    async def _recover_file(self, ino: int, parts: list[tuple[bytes, list[int]]], own: bytes) -> None:
        ops = self._ops
        keys = ops.ns.keys
        for victim, index in ((victim, index) for victim, indexes in parts for index in indexes):
            record = await ops.runner.run(recovery.dirty_chunk, keys, ino, index, victim)
            if record is None:
                continue
            if ops.tier is None:
                table = await trio.to_thread.run_sync(ops.blocks.recompute, record.dir_index, record.chunk_id)
                checksums, version = table.to_bytes(), None
            else:
                checksums, version = await self._finish_upload(ino, index, record)
            if await ops.runner.run(
                recovery.rebuild_chunk, keys, ino, index, victim, record.chunk_id, checksums, own, version
            ):
                log.warning(
                    "inode %d chunk %d was being written when its mount stopped: checksums rebuilt",
                    ino,
                    record.chunk_id,
                )
        with trio.CancelScope(shield=True):  # an unmount must not leave the files of dropped records
            dropped = await ops.runner.run(
                recovery.drop_chunks_beyond_size, keys, ino, ops.blocks.chunk_size, own
            )
            await ops.delete_chunk_files(dropped)
        if dropped:
            log.warning("inode %d: dropped %d chunk(s) past its recorded size", ino, len(dropped))
        ops.forget_cached_data(ino)

    async def _finish_upload(self, ino: int, index: int, record: ChunkRecord) -> tuple[bytes, int]:
        """A dead mount's chunk of the object data tier: uploaded from its staged file when that is on
        this host (the writes it left, as without a data tier), else left at its last uploaded version,
        what the last close or fsync acknowledged (its staged writes went with the other host)."""
        ops = self._ops
        tier = ops.tier
        assert tier is not None
        if not tier.is_local(record.dir_index, record.chunk_id):
            return record.checksums, record.version
        table = await trio.to_thread.run_sync(ops.blocks.recompute, record.dir_index, record.chunk_id)
        size = (await ops.runner.run(ops.ns.getattr, ino)).size
        length = min(ops.blocks.chunk_size, size - index * ops.blocks.chunk_size)
        if length <= 0:  # past the file's size: dropped below
            return table.to_bytes(), record.version
        version = await trio.to_thread.run_sync(tier.upload, record.dir_index, record.chunk_id, length, table)
        return table.to_bytes(), version


def _describe(session_id: bytes, known: dict[bytes, sessions.Session]) -> str:
    session = known.get(session_id)
    name = session_id.hex() or "(records from before sessions)"
    if session is None or session.is_stand_in:
        return name
    return f"{name} ({session.host} pid {session.pid} at {session.mountpoint})"
