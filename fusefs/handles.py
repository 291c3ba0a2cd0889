"""The handle table: the numbers handed to the kernel for open files and directories, with each open
directory's readdir cursor."""

from __future__ import annotations

import errno
import itertools
from collections import deque
from dataclasses import dataclass, field

from fusefs.accesses import HandleAccess
from fusefs.openfile import OpenFile
from metadata.model import FSError, InodeAttr


@dataclass
class DirHandle:
    ino: int
    #: The inode of "..": the root's is the root.
    parent: int
    #: Names handed to the kernel, by cookie; listing resumes after the name a cookie points to.
    names: list[bytes] = field(default_factory=list)
    #: Entries read from the store after ``names[-1]`` but not yet handed to the kernel.
    ahead: deque[tuple[bytes, InodeAttr]] = field(default_factory=deque)
    #: The last name read from the store, and whether no entries follow it.
    read_up_to: bytes | None = None
    read_to_end: bool = False

    def seek(self, start_id: int) -> None:
        """Resume at cookie ``start_id``: on a rewind or seekdir, what was fetched ahead is moot."""
        if start_id == len(self.names):
            return
        del self.names[start_id:]
        self.ahead.clear()
        self.read_up_to = self.names[-1] if len(self.names) > 2 else None
        self.read_to_end = False


@dataclass
class FileHandle:
    open_file: OpenFile
    flags: int
    #: Its provenance record, when provenance is on (fusefs/accesses.py).
    access: HandleAccess | None = None


class HandleTable:
    def __init__(self) -> None:
        self._handles: dict[int, FileHandle | DirHandle] = {}
        self._next_fh = itertools.count(1)

    def add(self, handle: FileHandle | DirHandle) -> int:
        fh = next(self._next_fh)
        self._handles[fh] = handle
        return fh

    def file(self, fh: int) -> FileHandle:
        handle = self._handles.get(fh)
        if not isinstance(handle, FileHandle):
            raise FSError(errno.EBADF)
        return handle

    def dir(self, fh: int) -> DirHandle:
        handle = self._handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise FSError(errno.EBADF)
        return handle

    def remove(self, fh: int) -> None:
        self._handles.pop(fh, None)
