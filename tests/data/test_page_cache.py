"""The page cache of the chunk files, seen with mincore(2) (which reads nothing itself): a sequential
reader's next chunk is read ahead from the disk (fusefs/openfile.py ``_prefetch_next_chunk``), and large
writes bypass it (O_DIRECT, blocks/store.py ``_write_direct``)."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import time
from pathlib import Path

import pytest

MiB = 1 << 20


def cached_pages(path: Path) -> int:
    """How many pages of a file are in the page cache (mincore(2) on a mapping: a probing read would
    itself start the kernel's readahead)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address != ctypes.c_void_p(-1).value, os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)
    try:
        resident = (ctypes.c_ubyte * -(-size // mmap.PAGESIZE))()
        assert libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), resident) == 0
        return sum(flag & 1 for flag in resident)
    finally:
        libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)  # one write(2): the kernel sends it as 1 MiB requests
        f.flush()
        os.fsync(f.fileno())


def test_large_writes_leave_no_pages_of_the_chunk_files_cached(data_mounts) -> None:
    mp = data_mounts.mount(inline_max=65536, chunk_size=MiB)
    data = os.urandom(3 * MiB)
    _write_file(mp / "three-chunks", data)
    files = data_mounts.chunk_files(mp)
    chunks = [files[chunk_id] for chunk_id in sorted(files)]  # ids are taken in order
    assert len(chunks) == 3
    if not data_mounts.data_tier:  # with one, each chunk's upload reads it back through the page cache
        assert [cached_pages(chunk) for chunk in chunks] == [0, 0, 0]
    stored = b"".join(chunk.read_bytes() for chunk in chunks)
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()


def test_reading_a_chunk_from_its_start_reads_the_next_chunk_file_ahead(data_mounts) -> None:
    mp = data_mounts.mount(inline_max=65536, chunk_size=MiB)
    path = mp / "three-chunks"
    data = os.urandom(3 * MiB)
    _write_file(path, data)
    chunks = [data_mounts.chunk_files(mp)[chunk_id] for chunk_id in sorted(data_mounts.chunk_files(mp))]
    assert len(chunks) == 3  # ids are taken in order: chunk files of indexes 0, 1, 2
    for chunk in chunks:
        _evict(chunk)
    if cached_pages(chunks[1]):
        pytest.skip("the block directory's filesystem keeps files cached (tmpfs?): nothing to observe")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the mount's own cached pages
        assert os.pread(fd, 64 * 1024, 0) == data[: 64 * 1024]  # within chunk 0, and its readahead too
        deadline = time.monotonic() + 30  # the kernel reads it in the background
        while cached_pages(chunks[1]) < MiB // mmap.PAGESIZE:
            assert time.monotonic() < deadline, "chunk 1 was never read ahead"
            time.sleep(0.02)
        assert cached_pages(chunks[2]) == 0  # only the next chunk: a reader may stop at any time
        os.lseek(fd, 0, os.SEEK_SET)
        assert hashlib.sha256(os.read(fd, 3 * MiB + 1)).digest() == hashlib.sha256(data).digest()
    finally:
        os.close(fd)
