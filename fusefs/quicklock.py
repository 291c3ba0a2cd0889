"""A trio lock that is taken without a trip through the event loop when it is free.

``trio.Lock`` yields to the scheduler on every acquisition, for fairness.  An open file's lock is taken
by every read, write and flush and is almost never contended, and with the request loop polling
/dev/fuse (fusefs/fuseloop.py) each such yield costs a round of the loop: a few µs per request."""

from __future__ import annotations

import trio


class QuickLock:
    def __init__(self) -> None:
        self._lock = trio.Lock()

    def locked(self) -> bool:
        return self._lock.locked()

    async def __aenter__(self) -> None:
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()
