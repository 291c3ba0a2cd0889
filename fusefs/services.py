"""Background work of a mounted filesystem, all in one nursery owned by the mount."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from fusefs.invalidation import follow_changes
from metadata import changelog
from metadata.model import now_ns

if TYPE_CHECKING:
    from fusefs.operations import FuseOperations

log = logging.getLogger(__name__)

LOG_TRIM_INTERVAL_S = 600.0


async def run_services(ops: FuseOperations) -> None:
    await ops.recover()
    async with trio.open_nursery() as nursery:
        if not ops.read_only:
            nursery.start_soon(_trim_change_log, ops)
        if ops.store.shared:
            nursery.start_soon(follow_changes, ops)


async def _trim_change_log(ops: FuseOperations) -> None:
    while True:
        cutoff = now_ns() - ops.config.log_retention_s * 1_000_000_000
        while await ops.runner.run(changelog.trim_log, ops.ns.keys, cutoff):
            await trio.sleep(0)
        await trio.sleep(LOG_TRIM_INTERVAL_S)
