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

import trio

from blocks import BlockStore
from blocks.tier import ChunkTier
from fusefs.lifecycle import InodeLifecycle
from fusefs.openfiles import OpenFiles
from fusefs.recovery_gate import RecoveryGate
from metadata import sessions
from metadata.meta import Meta
from metadata.model import ChunkRecord, now_ns
from metadata.recovery import Leftovers

log = logging.getLogger(__name__)

RECOVERY_INTERVAL_S = 30.0
RECOVERY_INTERVAL_ENV = "FUSEFS_RECOVERY_INTERVAL_S"


class Recovery:
    def __init__(
        self,
        meta: Meta,
        blocks: BlockStore,
        gate: RecoveryGate,
        lifecycle: InodeLifecycle,
        open_files: OpenFiles,
        *,
        shared: bool,
        tier: ChunkTier | None = None,
    ) -> None:
        self._meta = meta
        self._blocks = blocks
        #: The object data tier, if any: a dead mount's staged chunks are uploaded (``_finish_upload``).
        self._tier = tier
        self._gate = gate
        self._lifecycle = lifecycle
        self._open_files = open_files
        self._shared = shared
        self.here = sessions.this_process()

    async def run_pass(self) -> None:
        meta = self._meta
        own = meta.session
        try:
            known = await meta.list_sessions()
            left = await meta.leftovers()
            victims = sessions.to_recover(
                known,
                left,
                own,
                sole_owner=not self._shared,
                now_ns=now_ns(),
                timeout_s=sessions.timeout_s(),
                here=self.here,
            )
            claimed: dict[bytes, Leftovers] = {}
            for victim, take_over_from in victims:
                if await meta.claim(victim, now_ns(), take_over_from):
                    claimed[victim] = left.get(victim, Leftovers())
                    log.warning("recovering dead session %s", _describe(victim, known))
            # Per file, the chunks of every claimed session (two dead mounts may have written one file).
            files: dict[int, list[tuple[bytes, list[int]]]] = {}
            for victim, found in claimed.items():
                for ino, indexes in found.dirty.items():
                    files.setdefault(ino, []).append((victim, indexes))
                    self._gate.pending.setdefault(ino, trio.Event())
        finally:
            self._gate.listed.set()
        for ino, parts in files.items():
            try:
                await self._recover_file(ino, parts)
            finally:
                self._gate.pending.pop(ino, trio.Event()).set()
        for victim, found in claimed.items():
            if found.orphans:
                await self._lifecycle.reclaim_orphans_of(victim, found.orphans)
            await meta.release(victim)
            log.info(
                "session %s recovered: %d file(s) with chunks caught mid-write, %d orphan(s) reclaimed",
                victim.hex() or "(before sessions)",
                len(found.dirty),
                len(found.orphans),
            )

    async def _recover_file(self, ino: int, parts: list[tuple[bytes, list[int]]]) -> None:
        meta = self._meta
        for victim, index in ((victim, index) for victim, indexes in parts for index in indexes):
            record = await meta.dirty_chunk(ino, index, victim)
            if record is None:
                continue
            if self._tier is None:
                table = await trio.to_thread.run_sync(
                    self._blocks.recompute, record.dir_index, record.chunk_id
                )
                checksums, version = table.to_bytes(), None
            else:
                checksums, version = await self._finish_upload(ino, index, record)
            if await meta.rebuild_chunk(ino, index, victim, record.chunk_id, checksums, version):
                log.warning(
                    "inode %d chunk %d was being written when its mount stopped: checksums rebuilt",
                    ino,
                    record.chunk_id,
                )
        with trio.CancelScope(shield=True):  # an unmount must not leave the files of dropped records
            dropped = await meta.drop_chunks_beyond_size(ino, self._blocks.chunk_size)
            await self._lifecycle.delete_chunk_files(dropped)
        if dropped:
            log.warning("inode %d: dropped %d chunk(s) past its recorded size", ino, len(dropped))
        self._open_files.forget_cached_data(ino)

    async def _finish_upload(self, ino: int, index: int, record: ChunkRecord) -> tuple[bytes, int]:
        """A dead mount's chunk of the object data tier: uploaded from its staged file when that is on
        this host (the writes it left, as without a data tier), else left at its last uploaded version,
        what the last close or fsync acknowledged (its staged writes went with the other host)."""
        tier, blocks = self._tier, self._blocks
        assert tier is not None
        if not tier.is_local(record.dir_index, record.chunk_id):
            return record.checksums, record.version
        table = await trio.to_thread.run_sync(blocks.recompute, record.dir_index, record.chunk_id)
        size = (await self._meta.getattr(ino)).size
        length = min(blocks.chunk_size, size - index * blocks.chunk_size)
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
