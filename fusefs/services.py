"""Background work of a mounted filesystem, all in one nursery owned by the mount."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from blocks import BlockStore
from blocks.tier import ChunkTier
from fusefs.gc import collect_garbage
from fusefs.invalidation import follow_changes
from fusefs.lifecycle import InodeLifecycle
from fusefs.mount_session import MountSession
from fusefs.nscache import NamespaceCache
from fusefs.objectgc import DEFAULT_GRACE_S, OBJECT_GRACE_ENV, collect_objects
from fusefs.openfiles import OpenFiles
from fusefs.recovery import RECOVERY_INTERVAL_ENV, RECOVERY_INTERVAL_S, Recovery
from fusefs.store_runner import StoreRunner
from fusefs.trash_purge import keep_purging
from metadata import sessions
from metadata.meta import Meta
from metadata.model import now_ns

log = logging.getLogger(__name__)

LOG_TRIM_INTERVAL_S = 600.0
#: Unreferenced chunk files are collected once at mount and then this often; the
#: environment variable overrides it (tests collect continuously under writes).
GC_INTERVAL_S = 600.0
GC_INTERVAL_ENV = "FUSEFS_GC_INTERVAL_S"


#: A service that fails is restarted after this pause (it must never take the mount down with it).
SERVICE_RESTART_S = 5.0


async def run_services(
    meta: Meta,
    runner: StoreRunner,
    blocks: BlockStore,
    open_files: OpenFiles,
    lifecycle: InodeLifecycle,
    recovery: Recovery,
    mount_session: MountSession,
    cache: NamespaceCache,
    *,
    read_only: bool,
    tier: ChunkTier | None = None,
) -> None:
    async with trio.open_nursery() as nursery:
        if not read_only:
            nursery.start_soon(_keep_running, _keep_session, mount_session)
            nursery.start_soon(_keep_running, _recover_dead_sessions, recovery)
            nursery.start_soon(_keep_running, _reclaim_orphans, lifecycle)
            nursery.start_soon(_keep_running, _trim_records, meta)
            nursery.start_soon(_keep_running, keep_purging, meta, lifecycle)
            nursery.start_soon(_keep_running, _collect_garbage, runner, meta, blocks, tier)
        if runner.store.shared:
            forget_data = open_files.forget_cached_data
            nursery.start_soon(_keep_running, follow_changes, meta, runner, cache, forget_data)


async def _keep_running(service: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run ``service(*args)`` forever: an exception is logged and the service restarted, because a
    failing background task (a corrupt log record, a store hiccup) must not unmount the filesystem."""
    while True:
        try:
            await service(*args)
        except Exception as error:
            log.error(
                "background service %s failed (%s: %s); restarting in %g s",
                service.__name__,
                type(error).__name__,
                error,
                SERVICE_RESTART_S,
            )
        await trio.sleep(SERVICE_RESTART_S)


async def _reclaim_orphans(lifecycle: InodeLifecycle) -> None:
    """Delete the inodes that lost their last name once nothing holds them (in batches)."""
    while True:
        await lifecycle.reclaim_queued()


async def _keep_session(mount_session: MountSession) -> None:
    """Renew this mount's heartbeat, so other mounts know it is alive (metadata/sessions.py)."""
    interval = sessions.seconds_from_env(sessions.HEARTBEAT_INTERVAL_ENV, sessions.HEARTBEAT_INTERVAL_S)
    while True:
        await trio.sleep(interval)
        await mount_session.renew()


async def _recover_dead_sessions(recovery: Recovery) -> None:
    """Recover what dead mounts left, at mount and then periodically (fusefs/recovery.py)."""
    interval = sessions.seconds_from_env(RECOVERY_INTERVAL_ENV, RECOVERY_INTERVAL_S)
    while True:
        await recovery.run_pass()
        await trio.sleep(interval)


async def _trim_records(meta: Meta) -> None:
    """Trim change-log and provenance records past the retention and idempotency records past their use."""
    while True:
        while await meta.trim_log(now_ns()):
            await trio.lowlevel.checkpoint()  # let requests in between batches
        while await meta.trim_provenance(now_ns() - meta.config.log_retention_s * 1_000_000_000):
            await trio.lowlevel.checkpoint()
        await meta.trim_operations()
        await trio.sleep(LOG_TRIM_INTERVAL_S)


async def _collect_garbage(
    runner: StoreRunner, meta: Meta, blocks: BlockStore, tier: ChunkTier | None
) -> None:
    """Delete chunk files no record owns (fusefs/gc.py explains why this is safe while writing), and
    the data tier's objects none points at (fusefs/objectgc.py)."""
    interval = sessions.seconds_from_env(GC_INTERVAL_ENV, GC_INTERVAL_S)
    while True:
        stop = threading.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_set_when_cancelled, stop)
                # Not abandoned on cancel: unmount waits for the current batch (``stop`` ends the run
                # there), so the store is never closed under a running collection.
                await trio.to_thread.run_sync(
                    functools.partial(collect_garbage, runner.store, meta.config, blocks, stop=stop)
                )
                if tier is not None:
                    grace = sessions.seconds_from_env(OBJECT_GRACE_ENV, DEFAULT_GRACE_S)
                    await trio.to_thread.run_sync(
                        functools.partial(
                            collect_objects, runner.store, meta.config, tier.objects, grace_s=grace, stop=stop
                        )
                    )
                nursery.cancel_scope.cancel()
        except Exception as error:  # a failed pass is retried at the next interval
            causes = error.exceptions if isinstance(error, ExceptionGroup) else (error,)
            log.error("garbage collection failed: %s", "; ".join(str(cause) for cause in causes))
        await trio.sleep(interval)


async def _set_when_cancelled(event: threading.Event) -> None:
    try:
        await trio.sleep_forever()
    finally:
        event.set()
