"""Background work of a mounted filesystem, all in one nursery owned by the mount."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from fusefs.gc import collect_garbage
from fusefs.invalidation import follow_changes
from fusefs.objectgc import DEFAULT_GRACE_S, OBJECT_GRACE_ENV, collect_objects
from fusefs.recovery import RECOVERY_INTERVAL_ENV, RECOVERY_INTERVAL_S
from metadata import changelog, sessions
from metadata.idempotency import trim_operations
from metadata.model import now_ns

if TYPE_CHECKING:
    from fusefs.operations import FuseOperations

log = logging.getLogger(__name__)

LOG_TRIM_INTERVAL_S = 600.0
#: Unreferenced chunk files are collected once at mount and then this often; the
#: environment variable overrides it (tests collect continuously under writes).
GC_INTERVAL_S = 600.0
GC_INTERVAL_ENV = "FUSEFS_GC_INTERVAL_S"


#: A service that fails is restarted after this pause (it must never take the mount down with it).
SERVICE_RESTART_S = 5.0


async def run_services(ops: FuseOperations) -> None:
    async with trio.open_nursery() as nursery:
        if not ops.read_only:
            nursery.start_soon(_keep_running, _keep_session, ops)
            nursery.start_soon(_keep_running, _recover_dead_sessions, ops)
            nursery.start_soon(_keep_running, _reclaim_orphans, ops)
            nursery.start_soon(_keep_running, _trim_records, ops)
            nursery.start_soon(_keep_running, _collect_garbage, ops)
        if ops.store.shared:
            nursery.start_soon(_keep_running, follow_changes, ops)


async def _keep_running(service: Callable[[FuseOperations], Awaitable[None]], ops: FuseOperations) -> None:
    """Run ``service`` forever: an exception is logged and the service restarted, because a failing
    background task (a corrupt log record, a store hiccup) must not unmount the filesystem."""
    while True:
        try:
            await service(ops)
        except Exception as error:
            log.error(
                "background service %s failed (%s: %s); restarting in %g s",
                service.__name__,
                type(error).__name__,
                error,
                SERVICE_RESTART_S,
            )
        await trio.sleep(SERVICE_RESTART_S)


async def _reclaim_orphans(ops: FuseOperations) -> None:
    """Delete the inodes that lost their last name once nothing holds them (in batches)."""
    while True:
        await ops.reclaim_queued()


async def _keep_session(ops: FuseOperations) -> None:
    """Renew this mount's heartbeat, so other mounts know it is alive (metadata/sessions.py)."""
    interval = sessions.seconds_from_env(sessions.HEARTBEAT_INTERVAL_ENV, sessions.HEARTBEAT_INTERVAL_S)
    while True:
        await trio.sleep(interval)
        await ops.renew_session()


async def _recover_dead_sessions(ops: FuseOperations) -> None:
    """Recover what dead mounts left, at mount and then periodically (fusefs/recovery.py)."""
    interval = sessions.seconds_from_env(RECOVERY_INTERVAL_ENV, RECOVERY_INTERVAL_S)
    while True:
        await ops.recovery.run_pass()
        await trio.sleep(interval)


async def _trim_records(ops: FuseOperations) -> None:
    """Trim change-log records past the retention and idempotency records past their use."""
    while True:
        cutoff = now_ns() - ops.config.log_retention_s * 1_000_000_000
        while await ops.runner.run(changelog.trim_log, ops.ns.keys, cutoff):
            await trio.lowlevel.checkpoint()  # let requests in between batches
        await ops.runner.run(trim_operations, ops.ns.keys)
        await trio.sleep(LOG_TRIM_INTERVAL_S)


async def _collect_garbage(ops: FuseOperations) -> None:
    """Delete chunk files no record owns (fusefs/gc.py explains why this is safe while writing)."""
    interval = sessions.seconds_from_env(GC_INTERVAL_ENV, GC_INTERVAL_S)
    while True:
        stop = threading.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_set_when_cancelled, stop)
                # Not abandoned on cancel: unmount waits for the current batch (``stop`` ends the run
                # there), so the store is never closed under a running collection.
                await trio.to_thread.run_sync(
                    functools.partial(collect_garbage, ops.store, ops.config, ops.blocks, stop=stop)
                )
                if ops.tier is not None:
                    grace = sessions.seconds_from_env(OBJECT_GRACE_ENV, DEFAULT_GRACE_S)
                    await trio.to_thread.run_sync(
                        functools.partial(
                            collect_objects, ops.store, ops.config, ops.tier.objects, grace_s=grace, stop=stop
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
