"""A preallocated file beside the embedded store that a full disk gives back to deletions.

SQLite's WAL must grow even to delete, so on a full disk ``rm`` would fail with ENOSPC like everything
else.  The writable store keeps ``<db>.reserve`` (``RESERVE_BYTES``, allocated with
``posix_fallocate`` so the blocks are really taken); a commit that frees space and fails for want of it
releases the file and tries once more.  The file is made again once the disk has room.

Several processes of one store (shared mode) share the one file: it is created under ``O_EXCL`` (one
creator wins; a creator that cannot allocate it all removes it again) and released by ``unlink`` (a
second release finds nothing: the space is already back).  Nothing here raises: the reserve is a help,
never a reason for a commit or an open to fail.
"""

from __future__ import annotations

import os

#: Before the WAL can be truncated, a checkpoint may have to grow the database by what the WAL holds:
#: up to SQLite's auto-checkpoint size (1000 pages of 4 KiB) on a disk that filled.  Twice that, so the
#: deletions after it (a few pages each) have room too.
RESERVE_BYTES = 8 << 20


class DiskReserve:
    def __init__(self, path: str, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size

    def present(self) -> bool:
        return os.path.exists(self.path)

    def ensure(self) -> bool:
        """Make the reserve if it is missing and the disk has room for it and as much again (the store
        keeps working space); whether it is there afterwards."""
        if self.present():
            return True
        try:
            disk = os.statvfs(os.path.dirname(self.path))
            if disk.f_bavail * disk.f_frsize < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return True  # another process of the store made it meanwhile
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError:  # the disk filled meanwhile: a partial reserve would promise what it lacks
            self.release()
            return False
        finally:
            os.close(fd)
        return True

    def release(self) -> bool:
        """Give the reserve's space back to the disk; whether there was one to give."""
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True
