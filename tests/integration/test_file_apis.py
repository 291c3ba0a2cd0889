"""What applications see of the calls pyfuse3 has no handler for (locks, fallocate, copy_file_range,
lseek SEEK_DATA/SEEK_HOLE): the kernel's local fallbacks must give working results on one mount."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import subprocess
import sys
from pathlib import Path

from ._util import opened, write_file


def test_flock_and_posix_locks_within_one_mount(mnt: Path) -> None:
    f = mnt / "lockfile"
    write_file(f, b"0123456789")
    holder = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX, 5, 0)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(f)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with opened(f, os.O_RDWR) as fd:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("flock granted while another process holds it")
            except OSError as exc:
                assert exc.errno == errno.EWOULDBLOCK
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 2, 1)
                raise AssertionError("overlapping POSIX lock granted")
            except OSError as exc:
                assert exc.errno in (errno.EAGAIN, errno.EACCES)
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 3, 6)  # a range nobody holds
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    with opened(f, os.O_RDWR) as fd:  # released with the holder
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 0)


def test_posix_fallocate_copy_file_range_sendfile_seek_data(mnt: Path) -> None:
    src = mnt / "src"
    data = os.urandom(20000)
    write_file(src, data)
    with opened(mnt / "alloc", os.O_CREAT | os.O_RDWR) as fd:
        os.posix_fallocate(fd, 0, 30000)  # glibc emulates it when the filesystem cannot
        assert os.fstat(fd).st_size == 30000 and os.pread(fd, 30000, 0) == bytes(30000)
    with opened(src, os.O_RDONLY) as fin, opened(mnt / "cfr", os.O_CREAT | os.O_WRONLY) as fout:
        copied = 0
        while copied < len(data):
            n = os.copy_file_range(fin, fout, len(data) - copied)
            assert n > 0
            copied += n
    assert (mnt / "cfr").read_bytes() == data
    with opened(src, os.O_RDONLY) as fin, opened(mnt / "sf", os.O_CREAT | os.O_WRONLY) as fout:
        sent = 0
        while sent < len(data):
            sent += os.sendfile(fout, fin, sent, len(data) - sent)
    assert (mnt / "sf").read_bytes() == data
    with opened(src, os.O_RDONLY) as fd:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == len(data)
        try:
            os.lseek(fd, len(data) + 1, os.SEEK_DATA)
            raise AssertionError("SEEK_DATA past the end succeeded")
        except OSError as exc:
            assert exc.errno == errno.ENXIO
    subprocess.run(["cp", str(src), str(mnt / "cp-copy")], check=True)
    assert (mnt / "cp-copy").read_bytes() == data


def test_shared_mmap_small_file(mnt: Path) -> None:
    f = mnt / "mapped"
    write_file(f, bytes(8192))
    with opened(f, os.O_RDWR) as fd:
        with mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[100:105] = b"hello"
            m.flush()
        assert os.pread(fd, 5, 100) == b"hello"
        os.pwrite(fd, b"world", 200)
        with mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            assert m[200:205] == b"world" and m[100:105] == b"hello"
    assert f.read_bytes()[100:105] == b"hello"
