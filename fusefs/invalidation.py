"""Cross-mount cache invalidation: follow the change log and drop what the kernel caches of it.

On a shared store (FoundationDB), another mount may change an inode or entry this kernel has cached.
This task watches the log head key, reads the records committed since it last looked, skips its own
mount's, and invalidates the inode (attributes and page cache) and the entries each record names.
Kernel timeouts (``SHARED_TIMEOUT_S``) bound the staleness should a watch be missed; ``-o strict``
disables kernel caching altogether.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyfuse3
import trio

from fusefs.nscache import NamespaceCache
from fusefs.store_runner import StoreRunner
from metadata.changelog import LogRecord
from metadata.meta import Meta

log = logging.getLogger(__name__)

BATCH_RECORDS = 1000
#: Longest wait between two reads of the log even if no watch fires.
POLL_INTERVAL_S = 1.0
#: After a watch fires, records are let gather this long before they are read: the watch fires on this
#: mount's own commits too, and a burst of them (tar -x) would otherwise cost two transactions each.
GATHER_S = 0.05


async def follow_changes(
    meta: Meta, runner: StoreRunner, cache: NamespaceCache, forget_cached_data: Callable[[int], None]
) -> None:
    """Invalidate what other mounts change, forever; ``forget_cached_data`` drops an open file's copy."""
    last = await meta.last_versionstamp()
    cache.clear()  # changes made before this (re)start may have been missed
    while True:
        watch = await meta.watch_log()
        while True:
            records = await meta.read_log(last, BATCH_RECORDS)
            for record in records:
                if record.session != meta.session:
                    cache.forget(record)  # before the kernel asks again
                    await _invalidate(record, forget_cached_data)
            if records:
                last = records[-1].versionstamp
            if len(records) < BATCH_RECORDS:
                break
        if await runner.wait_watch(watch, POLL_INTERVAL_S):
            await trio.sleep(GATHER_S)
        watch.cancel()


async def _invalidate(record: LogRecord, forget_cached_data: Callable[[int], None]) -> None:
    forget_cached_data(record.ino)
    entries = []
    if record.op not in ("setxattr", "removexattr"):
        entries = [
            (parent, name)
            for parent, name in ((record.parent, record.name), (record.new_parent, record.new_name))
            if parent is not None and name is not None
        ]
    # In a worker thread: the kernel may write back dirty pages or ask about the entry before the
    # notification returns, and answering needs the event loop.
    await trio.to_thread.run_sync(invalidate_kernel_caches, record.ino, entries)


def invalidate_kernel_caches(ino: int, entries: list[tuple[int, bytes]]) -> None:
    """Drop what the kernel caches of inode ``ino`` and of the entries (parent, name); in a thread."""
    for notify, args in [(pyfuse3.invalidate_inode, (ino, False))] + [
        (pyfuse3.invalidate_entry, entry) for entry in entries
    ]:
        try:
            notify(*args)
        except OSError:
            pass  # the kernel has nothing of it cached
