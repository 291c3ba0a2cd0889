"""Helpers for the integration tests: errno assertions, libc calls Python lacks, tree manifests."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276}


def errname(code: int | None) -> str:
    return errno.errorcode.get(code or 0, str(code))


def expect_errno(expected: int | tuple[int, ...], fn: Callable, *args, **kwargs) -> OSError:
    """Call ``fn`` and check it fails with ``expected`` (an errno or a tuple of acceptable ones)."""
    allowed = expected if isinstance(expected, tuple) else (expected,)
    try:
        result = fn(*args, **kwargs)
    except OSError as exc:
        assert exc.errno in allowed, (
            f"{getattr(fn, '__name__', fn)}{args}: got {errname(exc.errno)}, "
            f"expected {'/'.join(errname(e) for e in allowed)}"
        )
        return exc
    raise AssertionError(
        f"{getattr(fn, '__name__', fn)}{args} succeeded ({result!r}), "
        f"expected {'/'.join(errname(e) for e in allowed)}"
    )


def _check(ret: int, what: str, *paths: object) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", *[str(p) for p in paths[:1]])


def renameat2(old: os.PathLike | str, new: os.PathLike | str, flags: int) -> None:
    fn = getattr(_libc, "renameat2", None)
    o, n = os.fsencode(old), os.fsencode(new)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        ret = fn(AT_FDCWD, o, AT_FDCWD, n, flags)
    else:  # glibc < 2.28
        nr = SYS_RENAMEAT2[os.uname().machine]
        ret = _libc.syscall(nr, AT_FDCWD, o, AT_FDCWD, n, ctypes.c_uint(flags))
    _check(ret, "renameat2", old)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path: os.PathLike | str, atime: tuple[int, int], mtime: tuple[int, int],
              follow: bool = True) -> None:
    """utimensat(2) with (sec, nsec) pairs; nsec may be UTIME_NOW or UTIME_OMIT."""
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    ret = _libc.utimensat(AT_FDCWD, os.fsencode(path), times, 0 if follow else AT_SYMLINK_NOFOLLOW)
    _check(ret, "utimensat", path)


def getxattr_sized(path: os.PathLike | str, name: str, size: int) -> int:
    """getxattr(2) into a buffer of ``size`` bytes; returns the length (raises OSError)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    _libc.getxattr.restype = ctypes.c_ssize_t
    ret = _libc.getxattr(os.fsencode(path), name.encode(), buf, ctypes.c_size_t(size))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ret


def listxattr_sized(path: os.PathLike | str, size: int) -> int:
    buf = ctypes.create_string_buffer(max(size, 1))
    _libc.listxattr.restype = ctypes.c_ssize_t
    ret = _libc.listxattr(os.fsencode(path), buf, ctypes.c_size_t(size))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ret


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(root: Path, *, times: bool = True, dir_times: bool = True) -> dict[str, tuple]:
    """Everything ``cp -a``/``tar``/``rsync -a`` must preserve, per relative path."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            entry: tuple = (stat.filemode(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                entry += (st.st_size, st.st_nlink, sha256_file(p))
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(p),)
            if times and (kind != stat.S_IFDIR or dir_times):
                entry += (st.st_mtime_ns,)
            out[rel] = entry
    return out


def make_sample_tree(root: Path, *, with_xattrs: bool = True) -> None:
    """A small tree with the things copy tools must preserve: nested dirs, empty files and dirs, odd
    names, modes, symlinks (relative, absolute, dangling, to a dir), a hard link, old mtimes."""
    import random

    rng = random.Random(1234)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [0, 1, 100, 4095, 4096, 4097, 30000, 65535]
    for d in ["a", "a/b", "a/b/c", "empty", "sp ace", "ünï"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        for d in ["", "a", "a/b/c", "sp ace"]:
            write_file(root / d / f"f{i}.bin", rng.randbytes(size))
    write_file(root / "ünï" / "naïve name.txt", b"unicode\n")
    write_file(root / "a" / "exec.sh", b"#!/bin/sh\necho hi\n", 0o755)
    write_file(root / "a" / "private", b"secret\n", 0o600)
    write_file(root / "a" / "readonly", b"ro\n", 0o444)
    os.link(root / "a" / "f1.bin", root / "a" / "hardlink.bin")
    os.symlink("f2.bin", root / "a" / "rel-link")
    os.symlink("/etc/hostname", root / "a" / "abs-link")
    os.symlink("does-not-exist", root / "a" / "dangling")
    os.symlink("b", root / "a" / "dir-link")
    if with_xattrs:
        os.setxattr(root / "a" / "f3.bin", "user.origin", b"sample")
    when = 1_500_000_000_123_456_789
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            os.utime(p, ns=(when, when), follow_symlinks=False)
            when += 1_000_000_007
    os.utime(root, ns=(when, when))


@contextlib.contextmanager
def opened(path: os.PathLike | str, flags: int, mode: int = 0o644) -> Iterator[int]:
    fd = os.open(path, flags, mode)
    try:
        yield fd
    finally:
        os.close(fd)
