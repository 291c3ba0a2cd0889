"""Large chunk writes that finish after their request has been answered.

Without the kernel's writeback cache, write(2) waits for the daemon's answer, so a sequential writer
would also wait for every pwrite into a chunk file: receiving the next megabyte and writing the last
one could not overlap.  Large writes are therefore handed to a background thread, in order, and
answered at once, as a page cache would do.  Like a page cache, this moves errors (a full block
directory) to later: they are raised by the file's next write, read, flush or fsync, so close(2) and
fsync(2) report them.  The bytes in flight are bounded.
"""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

#: Bytes of one open file that may be in flight at once.
MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024


class WriteBehind:
    """One open file's writes in flight, run by ``executor`` (which must run its jobs in order)."""

    def __init__(self, executor: concurrent.futures.Executor, max_bytes: int = MAX_IN_FLIGHT_BYTES) -> None:
        self._executor = executor
        self._max_bytes = max_bytes
        self._in_flight: deque[tuple[concurrent.futures.Future[None], int]] = deque()
        self._bytes = 0
        self._error: BaseException | None = None

    @property
    def idle(self) -> bool:
        return not self._in_flight

    @property
    def last(self) -> concurrent.futures.Future[None] | None:
        """The newest write in flight: done only once every earlier one is (the executor keeps order)."""
        return self._in_flight[-1][0] if self._in_flight else None

    async def submit(self, nbytes: int, write: Callable[..., None], *args: Any) -> None:
        """Start ``write(*args)``; raises the error of an earlier write instead, if one failed."""
        self._raise_error()
        self._in_flight.append((self._executor.submit(write, *args), nbytes))
        self._bytes += nbytes
        while self._bytes > self._max_bytes:
            await self._finish_oldest()

    async def drain(self) -> None:
        """Wait until every write has finished; raise the first error not reported yet."""
        await self.settle()
        self._raise_error()

    async def settle(self) -> None:
        """Wait until every write has finished, keeping an error for the next ``submit`` or ``drain``."""
        while self._in_flight:
            await self._finish_oldest()

    async def _finish_oldest(self) -> None:
        future, nbytes = self._in_flight[0]
        if not future.done():
            # Cancellable: a cancelled wait leaves the write in flight and listed, to be waited for again.
            await trio.to_thread.run_sync(concurrent.futures.wait, [future], abandon_on_cancel=True)
        self._in_flight.popleft()
        self._bytes -= nbytes
        error = future.exception()
        if error is not None and self._error is None:
            self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
