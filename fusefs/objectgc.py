"""Garbage collection of the object data tier: delete every object no chunk record points at.

Objects are immutable versions (blocks/objects.py): a flush uploads a chunk's new version, then commits
the record pointing at it; the previous version, and any object whose commit never came (the mount
died, the commit failed), is garbage.  An object younger than the grace period is never deleted: its
upload may belong to a flush whose commit is still in flight (uploads retry for at most
blocks.tier.UPLOAD_PATIENCE_S, and a commit rides through a store outage for minutes at most), so the
default grace of an hour leaves a wide margin.  Records are read in one snapshot transaction per batch,
after the batch was listed; a record published after that points at an object younger than the grace.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass

from blocks.objects import ObjectStore, ObjectStoreError, parse_object_name
from fusefs.batches import batches
from metadata.filedata import live_versions
from metadata.model import FsConfig
from metadata.store import Store

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 3600.0
#: Overrides the grace period of a mount's own collections (tests).
OBJECT_GRACE_ENV = "FUSEFS_OBJECT_GRACE_S"
BATCH_OBJECTS = 500


@dataclass
class ObjectGcReport:
    scanned: int = 0
    live: int = 0
    young: int = 0  #: unreferenced but within the grace period: kept for now
    deleted: int = 0
    failed: int = 0

    def __str__(self) -> str:
        text = (
            f"gc: {self.scanned} objects scanned, {self.live} live, {self.deleted} unreferenced deleted, "
            f"{self.young} unreferenced kept (younger than the grace period)"
        )
        return text + (f", {self.failed} could not be deleted" if self.failed else "")


def collect_objects(
    store: Store,
    config: FsConfig,
    objects: ObjectStore,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    stop: threading.Event | None = None,
) -> ObjectGcReport:
    """Delete the objects of `config`'s data tier that no chunk record points at and that are older
    than `grace_s`.  ``stop``, when set (by another thread), ends the collection after the current
    batch."""
    report = ObjectGcReport()
    named = ((name, uploaded, parse_object_name(name)) for name, uploaded in objects.listing())
    ours = ((name, uploaded, parsed) for name, uploaded, parsed in named if parsed is not None)
    for batch in batches(ours, BATCH_OBJECTS, stop):
        chunk_ids = [chunk_id for _, _, (chunk_id, _) in batch]
        live = store.transact(functools.partial(live_versions, fs_name=config.name, chunk_ids=chunk_ids))
        now = time.time()
        for name, uploaded, (chunk_id, version) in batch:
            report.scanned += 1
            if (chunk_id, version) in live or (chunk_id, 0) in live:
                report.live += 1
            elif now - uploaded < grace_s:
                report.young += 1
            else:
                try:
                    objects.delete(name)
                    report.deleted += 1
                except ObjectStoreError as error:
                    report.failed += 1
                    log.warning("gc: cannot delete unreferenced object %s: %s", name, error)
    if report.deleted or report.failed:
        log.info("%s", report)
    return report
