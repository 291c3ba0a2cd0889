"""The staging budget of the object data tier: how many bytes of chunks written on this host may wait
for their upload at once.

Every chunk written since its last upload holds one chunk's worth of the budget (a ``Reservation``) until
an upload of it succeeds.  While the object store is unreachable nothing is released, so the budget
fills and a write needing a new reservation waits (``reserve``) instead of staging without bound; past
its patience it fails with ``StagingFull`` (EIO), and the data already staged stays staged.  Thread-safe:
reservations are taken on the event loop and released by the upload threads.
"""

from __future__ import annotations

import threading
import time

from .errors import BlockError

DEFAULT_STAGING_BYTES = 1 << 30


class StagingFull(BlockError):
    """No staging room came free within the patience (the object store is down or too slow)."""


class Reservation:
    """`nbytes` of a `StagingBudget`, given back once by ``release`` (later calls do nothing)."""

    def __init__(self, budget: StagingBudget, nbytes: int) -> None:
        self._budget = budget
        self._nbytes = nbytes
        self._released = False

    def release(self) -> None:
        with self._budget._room:
            if self._released:
                return
            self._released = True
            self._budget._used -= self._nbytes
            self._budget._room.notify_all()


class StagingBudget:
    def __init__(self, limit_bytes: int = DEFAULT_STAGING_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._used = 0
        self._room = threading.Condition()

    @property
    def used_bytes(self) -> int:
        return self._used

    def try_reserve(self, nbytes: int) -> Reservation | None:
        """A reservation if there is room now (there always is when nothing is staged), else None."""
        with self._room:
            return self._take(nbytes)

    def reserve_now(self, nbytes: int) -> Reservation:
        """A reservation past the limit if need be: for bytes staged already that are being uploaded."""
        with self._room:
            self._used += nbytes
            return Reservation(self, nbytes)

    def reserve(self, nbytes: int, patience_s: float) -> Reservation:
        """A reservation, waiting up to `patience_s` for room; StagingFull past it."""
        deadline = time.monotonic() + patience_s
        with self._room:
            while (reservation := self._take(nbytes)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StagingFull(
                        f"staging full: {self._used} bytes written on this host are waiting for the object "
                        f"store (limit {self.limit_bytes})"
                    )
                self._room.wait(left)
            return reservation

    def _take(self, nbytes: int) -> Reservation | None:
        if self._used and self._used + nbytes > self.limit_bytes:
            return None
        self._used += nbytes
        return Reservation(self, nbytes)
