"""An LRU cache of open chunk-file descriptors shared by worker threads.

Sequential writes to one chunk arrive as many small calls; reopening the file for each would cost an
open/close pair per call.  A descriptor is only closed when nobody is using it: eviction and invalidation
mark an in-use entry, and the last user closes it, so a close never races a concurrent pread/pwrite (which
could otherwise hit a closed, or worse a reused, descriptor number).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

DEFAULT_MAX_OPEN_FDS = 256


class _OpenFile:
    __slots__ = ("fd", "users", "detached")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.detached = False  # no longer in the cache: the last user closes it


class FdCache:
    def __init__(self, capacity: int = DEFAULT_MAX_OPEN_FDS) -> None:
        if capacity < 1:
            raise ValueError(f"fd cache capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._files: OrderedDict[Hashable, _OpenFile] = OrderedDict()
        # Bumped by every invalidation: a descriptor opened before one may name a file since unlinked, so it
        # is used once and not cached.
        self._generation = 0
        #: Uses that found the descriptor open, and uses that opened the file (for the daemon's stats).
        self.hits = 0
        self.misses = 0

    @contextmanager
    def use(self, key: Hashable, opener: Callable[[], int]) -> Iterator[int]:
        """Yield an open descriptor for `key`, calling `opener` (outside the lock) on a miss."""
        entry = self._acquire(key, opener)
        try:
            yield entry.fd
        finally:
            self._release(entry)

    def invalidate(self, key: Hashable) -> None:
        """Forget `key` (its file is about to be unlinked); a descriptor in use closes at its last release."""
        with self._lock:
            self._generation += 1
            entry = self._files.pop(key, None)
            to_close = self._detach(entry) if entry else None
        _close(to_close)

    def close_all(self) -> None:
        with self._lock:
            self._generation += 1
            entries = list(self._files.values())
            self._files.clear()
            to_close = [self._detach(entry) for entry in entries]
        for fd in to_close:
            _close(fd)

    def __len__(self) -> int:
        return len(self._files)

    def _acquire(self, key: Hashable, opener: Callable[[], int]) -> _OpenFile:
        with self._lock:
            entry = self._files.get(key)
            if entry is not None:
                self._files.move_to_end(key)
                entry.users += 1
                self.hits += 1
                return entry
            self.misses += 1
            generation = self._generation
        fd = opener()  # may block on the disk: never under the lock
        evicted: list[int | None] = []
        with self._lock:
            entry = self._files.get(key)
            if entry is not None:  # another thread opened it meanwhile: share theirs
                self._files.move_to_end(key)
                entry.users += 1
                evicted.append(fd)
            else:
                entry = _OpenFile(fd)
                entry.users = 1
                if generation == self._generation:
                    self._files[key] = entry
                    while len(self._files) > self._capacity:
                        _, oldest = self._files.popitem(last=False)
                        evicted.append(self._detach(oldest))
                else:
                    entry.detached = True
        for stale in evicted:
            _close(stale)
        return entry

    def _release(self, entry: _OpenFile) -> None:
        with self._lock:
            entry.users -= 1
            to_close = entry.fd if entry.detached and entry.users == 0 else None
        _close(to_close)

    @staticmethod
    def _detach(entry: _OpenFile) -> int | None:
        """Called under the lock: returns the fd to close now, or None if a user will close it later."""
        entry.detached = True
        return entry.fd if entry.users == 0 else None


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
