"""Positional file I/O helpers that never move a file offset, so one descriptor serves many threads."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import threading
from collections.abc import Callable

_ZERO_FILL_BYTES = 1 << 20
#: O_DIRECT needs page-aligned memory: data is copied into a buffer of this size per thread, piece by piece.
_DIRECT_BUFFER_BYTES = 1 << 20
#: The alignment asked of a direct write's offset and length (the page size, a multiple of every common
#: logical block size).
DIRECT_ALIGNMENT = mmap.PAGESIZE
_per_thread = threading.local()

# <linux/falloc.h>; os has no fallocate with flags, hence ctypes.
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOSYS}


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    function = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        function.restype = ctypes.c_int
    return function


_fallocate = _load_fallocate()


def pread_into(fd: int, buffer: bytearray | memoryview, offset: int) -> int:
    """Fill `buffer` from `offset`, stopping early only at end of file; returns the bytes read."""
    view = memoryview(buffer)
    done = 0
    while done < len(view):
        count = os.preadv(fd, [view[done:]], offset + done)
        if count == 0:
            break
        done += count
    return done


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of `data` at `offset`; a short write (a nearly full disk) is continued until it errors."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def pwrite_direct(path: str, data: memoryview, offset: int) -> bool:
    """Write all of `data` at `offset` of the existing file `path` with O_DIRECT, not through the page
    cache; `offset` and `len(data)` are multiples of DIRECT_ALIGNMENT.  False, with nothing written, where
    the filesystem refuses O_DIRECT (EINVAL): the caller then writes through the page cache."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.EINVAL:
            return False
        raise
    try:
        buffer = _aligned_buffer()
        for start in range(0, len(data), len(buffer)):
            piece = data[start : start + len(buffer)]
            buffer[: len(piece)] = piece
            try:
                pwrite_all(fd, memoryview(buffer)[: len(piece)], offset + start)
            except OSError as error:
                if error.errno == errno.EINVAL and start == 0:
                    return False  # an alignment this device does not take: nothing was written
                raise
    finally:
        os.close(fd)
    return True


def _aligned_buffer() -> mmap.mmap:
    """This thread's page-aligned buffer (an anonymous mapping), made at its first direct write."""
    buffer = getattr(_per_thread, "direct_buffer", None)
    if buffer is None:
        buffer = _per_thread.direct_buffer = mmap.mmap(-1, _DIRECT_BUFFER_BYTES)
    return buffer


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Make [offset, offset+length) read as zeros, freeing its space where the filesystem can (size kept)."""
    if length <= 0:
        return
    if _fallocate is not None:
        if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
            return
        error = ctypes.get_errno()
        if error not in _UNSUPPORTED:
            raise OSError(error, os.strerror(error))
    write_zeros(fd, offset, length)


def write_zeros(fd: int, offset: int, length: int) -> None:
    """Fallback for filesystems without hole punching: the range reads as zeros but keeps its space."""
    zeros = memoryview(bytes(min(length, _ZERO_FILL_BYTES)))
    end = offset + length
    while offset < end:
        piece = min(len(zeros), end - offset)
        pwrite_all(fd, zeros[:piece], offset)
        offset += piece
