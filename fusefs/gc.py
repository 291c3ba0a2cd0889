"""Garbage collection of chunk files: delete every chunk file that no chunk record owns.

A chunk file becomes garbage when its file is deleted or truncated and the daemon dies before it removes
the chunk file, or when a write is interrupted after its chunk was allocated.  Every chunk record has a
reverse key chunk id → inode (``metadata.filedata.dead_chunks``); a chunk file without one is garbage.
A chunk shared by clones keeps its owner key until the last record referring to it is dropped
(metadata/filedata.py counts the references), so gc keeps it while any copy uses it.

Safe while a daemon writes to the filesystem: a chunk's record (and its owner key) commits *before* its
file is first created (fusefs/openfile.py), so a chunk file seen in a listing either had its owner
committed before the listing, or no owner will ever be written for it.  The liveness check of a batch
reads the store in a transaction that starts after the batch was listed, so it sees every owner that
existed when the files were seen.  Chunk ids are never reused, so a dead chunk never comes back to life.

A mount's recovery of a dead mount (fusefs/recovery.py) drops records before deleting their files, so
gc beside it sees either the record or no record and no file that comes back.  The ``fusefs gc`` command
still refuses while any mount of the filesystem is alive (its session, metadata/sessions.py): that mount
collects garbage itself.

Only this filesystem's directories are collected: every deletion first checks that the directory's
marker still names this filesystem (``BlockStore.delete``), and a directory whose marker is missing or
foreign (a disk unmounted or swapped under a running mount) stops the collection with that error, having
deleted nothing there.  Another filesystem's chunk files would otherwise all look unreferenced.

Work is done in batches (fusefs/batches.py: one snapshot read transaction per ``BATCH_IDS`` ids).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass, field

from blocks import BlockStore
from fusefs.batches import batches
from metadata.filedata import dead_chunks
from metadata.model import FsConfig
from metadata.store import Store

log = logging.getLogger(__name__)

#: Chunk ids checked per read transaction.
BATCH_IDS = 500


@dataclass
class GcReport:
    """What one collection found and did."""

    scanned: int = 0  #: chunk files seen in the block directories
    live: int = 0  #: of which owned by a chunk record
    deleted: int = 0  #: garbage chunk files removed
    freed_bytes: int = 0  #: disk space those files took (allocated blocks, not apparent size)
    failed: int = 0  #: garbage chunk files that could not be removed (see the log)
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"gc: {self.scanned} chunk files scanned, {self.live} live, {self.deleted} unreferenced "
            f"deleted ({_human(self.freed_bytes)} freed)"
        )
        if self.failed:
            text += f", {self.failed} could not be deleted"
        return text


def collect_garbage(
    store: Store,
    config: FsConfig,
    blocks: BlockStore,
    *,
    batch_ids: int = BATCH_IDS,
    stop: threading.Event | None = None,
) -> GcReport:
    """Delete the chunk files of ``blocks`` that no chunk record of filesystem ``config`` owns.

    ``stop``, when set (by another thread), ends the collection after the current batch."""
    report = GcReport()
    for batch in batches(blocks.iter_chunk_ids(), batch_ids, stop):
        report.scanned += len(batch)
        # The transaction starts (takes its read version) after the batch was listed: see the docstring.
        dead = store.transact(functools.partial(dead_chunks, fs_name=config.name, places=batch))
        report.live += len(batch) - len(dead)
        for dir_index, chunk_id in dead:
            _delete(blocks, dir_index, chunk_id, report)
    if report.deleted or report.failed:
        log.info("%s", report)
    return report


def _delete(blocks: BlockStore, dir_index: int, chunk_id: int, report: GcReport) -> None:
    path = blocks.path(dir_index, chunk_id)
    try:
        allocated = os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return  # deleted meanwhile (by the daemon, after the record went)
    except OSError:
        allocated = 0
    try:
        blocks.delete(dir_index, chunk_id)
    except OSError as error:
        report.failed += 1
        report.errors.append(f"{path}: {error.strerror or error}")
        log.warning("gc: cannot delete unreferenced chunk file %s: %s", path, error)
        return
    report.deleted += 1
    report.freed_bytes += allocated
    log.debug("gc: deleted unreferenced chunk %d (%s)", chunk_id, path)


def _human(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    size = float(count) / 1024
    units = ["KiB", "MiB", "GiB"]
    while size >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{size:.1f} {units[0]}"
