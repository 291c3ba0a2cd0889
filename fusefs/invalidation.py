"""Cross-mount cache invalidation: follow the change log and drop what the kernel caches of it.

On a shared store (FoundationDB), another mount may change an inode or entry this kernel has cached.
This task watches the log head key, reads the records committed since it last looked, skips its own
mount's, and invalidates the inode (attributes and page cache) and the entries each record names.
Kernel timeouts (``SHARED_TIMEOUT_S``) bound the staleness should a watch be missed; ``-o strict``
disables kernel caching altogether.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pyfuse3
import trio

from metadata import changelog
from metadata.changelog import LogRecord

if TYPE_CHECKING:
    from fusefs.operations import FuseOperations

log = logging.getLogger(__name__)

BATCH_RECORDS = 1000
#: Longest wait between two reads of the log even if no watch fires.
POLL_INTERVAL_S = 1.0


async def follow_changes(ops: FuseOperations) -> None:
    keys = ops.ns.keys
    last = await ops.runner.run(changelog.last_versionstamp, keys)
    while True:
        watch = await ops.runner.run(lambda tr: tr.watch(keys.log_head()))
        while True:
            records = await ops.runner.run(changelog.read_log, keys.name, last, BATCH_RECORDS)
            for record in records:
                if record.session != ops.ns.session:
                    await _invalidate(ops, record)
            if records:
                last = records[-1].versionstamp
            if len(records) < BATCH_RECORDS:
                break
        await ops.runner.wait_watch(watch, POLL_INTERVAL_S)
        watch.cancel()


async def _invalidate(ops: FuseOperations, record: LogRecord) -> None:
    ops.forget_cached_data(record.ino)
    entries = []
    if record.op not in ("setxattr", "removexattr"):
        entries = [
            (parent, name)
            for parent, name in ((record.parent, record.name), (record.new_parent, record.new_name))
            if parent is not None and name is not None
        ]
    # In a worker thread: the kernel may write back dirty pages or ask about the entry before the
    # notification returns, and answering needs the event loop.
    await trio.to_thread.run_sync(_invalidate_kernel_caches, record.ino, entries)


def _invalidate_kernel_caches(ino: int, entries: list[tuple[int, bytes]]) -> None:
    for notify, args in [(pyfuse3.invalidate_inode, (ino, False))] + [
        (pyfuse3.invalidate_entry, entry) for entry in entries
    ]:
        try:
            notify(*args)
        except OSError:
            pass  # the kernel has nothing of it cached
