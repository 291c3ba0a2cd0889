"""The mounted daemon's pass over the trash: entries older than the filesystem's ``trash_days`` are
deleted, one transaction each, oldest first (names sort by removal time), so the pass stops at the
first entry still young.  Run at mount and then every ``TRASH_PURGE_INTERVAL_S``."""

from __future__ import annotations

import logging
import os

import trio

from fusefs.invalidation import invalidate_kernel_caches
from fusefs.lifecycle import InodeLifecycle
from metadata import sessions, trash
from metadata.meta import Meta
from metadata.model import ROOT_CALLER, FSError, Removal, now_ns

log = logging.getLogger(__name__)

TRASH_PURGE_INTERVAL_S = 3600.0
TRASH_PURGE_INTERVAL_ENV = "FUSEFS_TRASH_PURGE_INTERVAL_S"
#: The length of a trash day in seconds: tests shorten it to see entries expire.
TRASH_DAY_ENV = "FUSEFS_TRASH_DAY_S"
PURGE_PAGE = 100


async def keep_purging(meta: Meta, lifecycle: InodeLifecycle) -> None:
    interval = sessions.seconds_from_env(TRASH_PURGE_INTERVAL_ENV, TRASH_PURGE_INTERVAL_S)
    while True:
        if meta.config.trash_days:
            purged = await purge_expired(meta, lifecycle)
            if purged:
                log.info("trash: purged %d entries older than %d days", purged, meta.config.trash_days)
        await trio.sleep(interval)


async def purge_expired(meta: Meta, lifecycle: InodeLifecycle) -> int:
    trash_ino = await meta.trash_dir()
    if trash_ino is None:
        return 0
    day_s = float(os.environ.get(TRASH_DAY_ENV, 86_400))
    days = meta.config.trash_days * day_s / 86_400
    now, purged, after = now_ns(), 0, None
    while True:
        entries, complete = await meta.trash_entries(after, PURGE_PAGE)
        expired = [entry for entry in entries if trash.is_expired(entry, days, now)]
        for entry in expired:
            removal: Removal | None
            try:
                if entry.attr.is_dir:
                    removal = await meta.rmdir(trash_ino, entry.name, ROOT_CALLER)
                else:
                    removal = await meta.unlink(trash_ino, entry.name, ROOT_CALLER, lifecycle.still_open)
            except FSError as error:  # removed meanwhile, or a directory someone filled
                log.warning("trash: %r not purged: %s", entry.name, os.strerror(error.errno))
                continue
            await lifecycle.after_removal(removal)
            await trio.to_thread.run_sync(invalidate_kernel_caches, entry.attr.ino, [(trash_ino, entry.name)])
            purged += 1
        if complete or len(expired) < len(entries):
            return purged
        after = entries[-1].name
