"""Opens wait here for recovery (fusefs/recovery.py): no read may meet a checksum table about to be
rebuilt, so a file with chunks a dead mount left mid-write opens only once they are rebuilt."""

from __future__ import annotations

import trio


class RecoveryGate:
    """Holds back opens of files whose chunks recovery is about to rebuild."""

    def __init__(self, *, read_only: bool) -> None:
        #: Set once the first pass knows which files it will rebuild (at once for a read-only mount).
        self.listed = trio.Event()
        if read_only:
            self.listed.set()
        #: Inodes with chunks waiting to be rebuilt: opening one waits for its event.
        self.pending: dict[int, trio.Event] = {}

    async def wait_for(self, ino: int) -> None:
        """Return once ``ino`` has no chunk waiting for recovery (no checkpoint when none is)."""
        if not self.listed.is_set():
            await self.listed.wait()
        pending = self.pending.get(ino)
        if pending is not None:
            await pending.wait()
