"""Namespace system calls through the kernel on a real mount, with exact errno values.

The reference for every errno is what Linux gives on ext4/tmpfs (run with FUSEFS_TEST_LOCAL=1 to check
the tests themselves).  Every test here also runs with the embedded store's retry chaos on.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from ._util import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    UTIME_NOW,
    UTIME_OMIT,
    expect_errno,
    make_sample_tree,
    manifest,
    opened,
    renameat2,
    utimensat,
    write_file,
)

pytestmark = pytest.mark.chaos

TICK = 0.02  # longer than the coarsest timestamp granularity we accept


def read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def tick() -> None:
    time.sleep(TICK)


def inodes_used(mnt: Path) -> int:
    s = os.statvfs(mnt)
    return s.f_files - s.f_ffree


def wait_inodes_used(mnt: Path, expected: int, timeout: float = 5.0) -> None:
    """statfs's inode count reaches ``expected`` (the kernel forgets unlinked inodes asynchronously)."""
    deadline = time.monotonic() + timeout
    while (used := inodes_used(mnt)) != expected:
        assert time.monotonic() < deadline, f"{used} inodes in use after {timeout} s, expected {expected}"
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------------
# open flags


def test_open_creat_excl_trunc_append(mnt: Path) -> None:
    p = mnt / "f"
    with opened(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640) as fd:
        assert os.write(fd, b"hello") == 5
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_size == 5 and st.st_nlink == 1
    assert st.st_uid == os.geteuid() and st.st_gid == os.getegid()
    expect_errno(errno.EEXIST, os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with opened(p, os.O_CREAT | os.O_RDWR, 0o600) as fd:  # plain O_CREAT opens the existing file
        assert os.read(fd, 100) == b"hello"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    with opened(p, os.O_WRONLY | os.O_APPEND) as fd:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b" world")
    assert read(p) == b"hello world"
    before = os.stat(p)
    tick()
    with opened(p, os.O_WRONLY | os.O_TRUNC) as fd:
        assert os.fstat(fd).st_size == 0
    after = os.stat(p)
    assert after.st_size == 0 and read(p) == b""
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
    # two appenders interleave without overwriting each other
    with opened(p, os.O_WRONLY | os.O_APPEND) as a, opened(p, os.O_WRONLY | os.O_APPEND) as b:
        for i in range(5):
            os.write(a, b"a%d" % i)
            os.write(b, b"b%d" % i)
    assert read(p) == b"a0b0a1b1a2b2a3b3a4b4"


def test_open_errors(mnt: Path) -> None:
    f, d = mnt / "file", mnt / "dir"
    write_file(f, b"x")
    d.mkdir()
    os.symlink("nowhere", mnt / "dangling")
    expect_errno(errno.ENOENT, os.open, mnt / "missing", os.O_RDONLY)
    expect_errno(errno.ENOENT, os.open, mnt / "missing" / "x", os.O_CREAT | os.O_WRONLY)
    expect_errno(errno.ENOTDIR, os.open, f / "x", os.O_RDONLY)
    expect_errno(errno.ENOTDIR, os.open, f / "x", os.O_CREAT | os.O_WRONLY)
    expect_errno(errno.EISDIR, os.open, d, os.O_WRONLY)
    expect_errno(errno.EISDIR, os.open, d, os.O_RDWR)
    expect_errno(errno.ENOTDIR, os.open, f, os.O_RDONLY | os.O_DIRECTORY)
    expect_errno(errno.EEXIST, os.open, mnt / "dangling", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    expect_errno(errno.ELOOP, os.open, mnt / "dangling", os.O_RDONLY | os.O_NOFOLLOW)
    # O_CREAT through a dangling symlink creates its target
    with opened(mnt / "dangling", os.O_CREAT | os.O_WRONLY) as fd:
        os.write(fd, b"via link")
    assert read(mnt / "nowhere") == b"via link"
    with opened(d, os.O_RDONLY | os.O_DIRECTORY) as fd:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)


# --------------------------------------------------------------------------------------------------
# directories


def test_mkdir_rmdir_unlink_errors(mnt: Path) -> None:
    d, f = mnt / "d", mnt / "f"
    d.mkdir()
    write_file(f, b"")
    st = os.stat(d)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and st.st_nlink == 2
    os.mkdir(mnt / "m700", 0o700)
    assert stat.S_IMODE(os.stat(mnt / "m700").st_mode) == 0o700
    expect_errno(errno.EEXIST, os.mkdir, d)
    expect_errno(errno.EEXIST, os.mkdir, f)
    expect_errno(errno.ENOENT, os.mkdir, mnt / "missing" / "x")
    expect_errno(errno.ENOTDIR, os.mkdir, f / "x")
    (d / "sub").mkdir()
    write_file(d / "file", b"")
    expect_errno(errno.ENOTEMPTY, os.rmdir, d)
    expect_errno(errno.ENOTDIR, os.rmdir, f)
    expect_errno(errno.ENOTDIR, os.rmdir, d / "file")
    expect_errno(errno.EISDIR, os.unlink, d)
    expect_errno(errno.EINVAL, os.rmdir, f"{d}/sub/.")
    expect_errno(errno.ENOENT, os.rmdir, mnt / "missing")
    expect_errno(errno.ENOENT, os.unlink, mnt / "missing")
    expect_errno(errno.ENOTDIR, os.unlink, f / "x")
    os.unlink(d / "file")
    expect_errno(errno.ENOTEMPTY, os.rmdir, d)
    os.rmdir(d / "sub")
    os.rmdir(d)
    assert not d.exists() and sorted(os.listdir(mnt)) == ["f", "m700"]
    expect_errno(errno.ENOENT, os.stat, d)


def test_names_too_long(mnt: Path) -> None:
    ok, long = "n" * 255, "n" * 256
    write_file(mnt / ok, b"ok")
    os.mkdir(mnt / ("d" * 255))
    os.symlink("x", mnt / ("s" * 255))
    multibyte = "é" * 127 + "x"  # 255 bytes in UTF-8
    write_file(mnt / multibyte, b"")
    assert set(os.listdir(mnt)) == {ok, "d" * 255, "s" * 255, multibyte}
    assert read(mnt / ok) == b"ok"
    too_long = mnt / long
    expect_errno(errno.ENAMETOOLONG, os.open, too_long, os.O_CREAT | os.O_WRONLY)
    expect_errno(errno.ENAMETOOLONG, os.stat, too_long)
    expect_errno(errno.ENAMETOOLONG, os.mkdir, too_long)
    expect_errno(errno.ENAMETOOLONG, os.symlink, "x", too_long)
    expect_errno(errno.ENAMETOOLONG, os.link, mnt / ok, too_long)
    expect_errno(errno.ENAMETOOLONG, os.rename, mnt / ok, too_long)
    expect_errno(errno.ENAMETOOLONG, os.mkfifo, too_long)
    expect_errno(errno.ENAMETOOLONG, os.open, mnt / ("é" * 128), os.O_CREAT | os.O_WRONLY)
    assert len(os.listdir(mnt)) == 4


# --------------------------------------------------------------------------------------------------
# special files


def test_mknod_special_files(mnt: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("device nodes need root")
    os.mkfifo(mnt / "fifo", 0o640)
    os.mknod(mnt / "fifo2", stat.S_IFIFO | 0o600)
    os.mknod(mnt / "sock", stat.S_IFSOCK | 0o600)
    os.mknod(mnt / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(mnt / "blk", stat.S_IFBLK | 0o660, os.makedev(8, 17))
    os.mknod(mnt / "reg", stat.S_IFREG | 0o644)
    kinds = {name: os.lstat(mnt / name) for name in os.listdir(mnt)}
    assert stat.S_ISFIFO(kinds["fifo"].st_mode) and stat.S_IMODE(kinds["fifo"].st_mode) == 0o640
    assert stat.S_ISFIFO(kinds["fifo2"].st_mode)
    assert stat.S_ISSOCK(kinds["sock"].st_mode)
    assert stat.S_ISCHR(kinds["chr"].st_mode) and kinds["chr"].st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(kinds["blk"].st_mode) and kinds["blk"].st_rdev == os.makedev(8, 17)
    assert stat.S_IMODE(kinds["blk"].st_mode) == 0o640  # umask 022
    assert stat.S_ISREG(kinds["reg"].st_mode) and kinds["reg"].st_size == 0
    with os.scandir(mnt) as it:
        types = {e.name: (e.is_file(follow_symlinks=False), e.is_dir(follow_symlinks=False)) for e in it}
    assert types["reg"] == (True, False) and types["fifo"] == (False, False)
    expect_errno(errno.EEXIST, os.mkfifo, mnt / "fifo")
    # a FIFO on the mount carries data like any pipe
    r = os.open(mnt / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(mnt / "fifo", os.O_WRONLY)
    try:
        os.write(w, b"through the fifo")
        assert os.read(r, 100) == b"through the fifo"
    finally:
        os.close(w)
        os.close(r)


def test_unix_socket_bound_on_mount(mnt: Path) -> None:
    old = os.getcwd()
    os.chdir(mnt)  # sun_path is limited to 108 bytes: bind a relative name
    try:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind("s.sock")
        srv.listen(1)
        cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cli.connect("s.sock")
        conn, _ = srv.accept()
        cli.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        for s in (conn, cli, srv):
            s.close()
        assert stat.S_ISSOCK(os.lstat("s.sock").st_mode)
        os.unlink("s.sock")
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------------------------------
# symlinks and hard links


def test_symlink_readlink(mnt: Path) -> None:
    write_file(mnt / "target", b"content")
    (mnt / "dir").mkdir()
    write_file(mnt / "dir" / "inner", b"inner")
    os.symlink("target", mnt / "rel")
    os.symlink(str(mnt / "target"), mnt / "abs")
    os.symlink("dir", mnt / "dirlink")
    os.symlink("no/such/thing", mnt / "dangling")
    assert os.readlink(mnt / "rel") == "target"
    assert os.readlink(mnt / "abs") == str(mnt / "target")
    st = os.lstat(mnt / "rel")
    assert stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o777 and st.st_size == len("target")
    assert read(mnt / "rel") == read(mnt / "abs") == b"content"
    assert os.stat(mnt / "rel").st_ino == os.stat(mnt / "target").st_ino
    assert os.listdir(mnt / "dirlink") == ["inner"]
    assert read(mnt / "dirlink" / "inner") == b"inner"
    expect_errno(errno.ENOENT, os.stat, mnt / "dangling")
    assert os.lstat(mnt / "dangling").st_size == len("no/such/thing")
    expect_errno(errno.EEXIST, os.symlink, "x", mnt / "rel")
    expect_errno(errno.EEXIST, os.symlink, "x", mnt / "dir")
    expect_errno(errno.EINVAL, os.readlink, mnt / "target")
    expect_errno(errno.EINVAL, os.readlink, mnt / "dir")
    expect_errno(errno.ENOENT, os.readlink, mnt / "missing")
    os.symlink("loop2", mnt / "loop1")
    os.symlink("loop1", mnt / "loop2")
    expect_errno(errno.ELOOP, os.stat, mnt / "loop1")
    long_target = "/".join(["abcdefghijklmno"] * 256)[:4095]
    os.symlink(long_target, mnt / "long")
    assert os.readlink(mnt / "long") == long_target
    assert os.lstat(mnt / "long").st_size == 4095
    unicode_target = "zielö/ファイル"
    os.symlink(unicode_target, mnt / "uni")
    assert os.readlink(mnt / "uni") == unicode_target
    assert os.lstat(mnt / "uni").st_size == len(unicode_target.encode())
    os.unlink(mnt / "rel")
    assert read(mnt / "target") == b"content"


def test_hard_links_and_nlink(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"one")
    (mnt / "d").mkdir()
    os.link(f, mnt / "g")
    os.link(f, mnt / "d" / "h")
    sf, sg, sh = os.stat(f), os.stat(mnt / "g"), os.stat(mnt / "d" / "h")
    assert sf.st_ino == sg.st_ino == sh.st_ino and sf.st_nlink == sg.st_nlink == 3
    write_file(mnt / "g", b"written through g")
    assert read(f) == read(mnt / "d" / "h") == b"written through g"
    expect_errno(errno.EEXIST, os.link, f, mnt / "g")
    expect_errno(errno.EPERM, os.link, mnt / "d", mnt / "dlink")
    expect_errno(errno.ENOENT, os.link, mnt / "missing", mnt / "x")
    expect_errno(errno.ENOENT, os.link, f, mnt / "missing" / "x")
    os.unlink(f)
    assert os.stat(mnt / "g").st_nlink == 2
    os.unlink(mnt / "d" / "h")
    assert os.stat(mnt / "g").st_nlink == 1
    assert read(mnt / "g") == b"written through g"
    # a hard link to a symlink itself (linkat without AT_SYMLINK_FOLLOW)
    os.symlink("g", mnt / "sl")
    os.link(mnt / "sl", mnt / "sl2", follow_symlinks=False)
    assert stat.S_ISLNK(os.lstat(mnt / "sl2").st_mode) and os.lstat(mnt / "sl").st_nlink == 2
    assert os.readlink(mnt / "sl2") == "g"


def test_directory_nlink(mnt: Path) -> None:
    root_links = os.stat(mnt).st_nlink
    d = mnt / "d"
    d.mkdir()
    assert os.stat(mnt).st_nlink == root_links + 1
    assert os.stat(d).st_nlink == 2
    for name in "abc":
        (d / name).mkdir()
    write_file(d / "file", b"")
    assert os.stat(d).st_nlink == 5
    os.rmdir(d / "a")
    assert os.stat(d).st_nlink == 4
    (mnt / "e").mkdir()
    os.rename(d / "b", mnt / "e" / "b")
    assert os.stat(d).st_nlink == 3 and os.stat(mnt / "e").st_nlink == 3
    assert os.stat(mnt / "e" / "b" / "..").st_ino == os.stat(mnt / "e").st_ino
    assert os.stat(mnt).st_nlink == root_links + 2


# --------------------------------------------------------------------------------------------------
# rename


def test_rename_files(mnt: Path) -> None:
    a, b = mnt / "a", mnt / "b"
    write_file(a, b"A")
    ino = os.stat(a).st_ino
    os.rename(a, b)
    assert not a.exists() and read(b) == b"A" and os.stat(b).st_ino == ino
    write_file(a, b"new A")
    with opened(b, os.O_RDONLY) as old_b:  # the replaced file stays readable through its open fd
        os.rename(a, b)
        assert os.pread(old_b, 10, 0) == b"A" and os.fstat(old_b).st_nlink == 0
    assert read(b) == b"new A" and os.listdir(mnt) == ["b"]
    os.rename(b, b)  # onto itself: nothing happens
    assert read(b) == b"new A"
    os.link(b, mnt / "c")  # two links of one inode: rename does nothing
    os.rename(b, mnt / "c")
    assert sorted(os.listdir(mnt)) == ["b", "c"] and os.stat(b).st_nlink == 2
    os.unlink(mnt / "c")
    expect_errno(errno.ENOENT, os.rename, mnt / "missing", mnt / "x")
    expect_errno(errno.ENOENT, os.rename, b, mnt / "missing" / "x")
    expect_errno(errno.ENOTDIR, os.rename, b, b / "x")
    (mnt / "sub").mkdir()
    os.rename(b, mnt / "sub" / "moved")
    assert read(mnt / "sub" / "moved") == b"new A" and os.listdir(mnt) == ["sub"]


def test_rename_type_mismatches(mnt: Path) -> None:
    f, d, e = mnt / "f", mnt / "d", mnt / "e"
    write_file(f, b"f")
    d.mkdir()
    e.mkdir()
    write_file(e / "x", b"")
    expect_errno(errno.EISDIR, os.rename, f, d)
    expect_errno(errno.ENOTDIR, os.rename, d, f)
    expect_errno(errno.ENOTEMPTY, os.rename, d, e)
    expect_errno(errno.EINVAL, os.rename, d, d / "inside")
    (d / "sub" / "deeper").mkdir(parents=True)
    expect_errno(errno.EINVAL, os.rename, d, d / "sub" / "deeper" / "x")
    expect_errno(errno.ENOTEMPTY, os.rename, e, d)
    assert sorted(os.listdir(mnt)) == ["d", "e", "f"]
    # a directory replaces an empty directory
    ino = os.stat(e).st_ino
    (mnt / "empty").mkdir()
    os.rename(e, mnt / "empty")
    assert os.stat(mnt / "empty").st_ino == ino and os.listdir(mnt / "empty") == ["x"]
    assert not e.exists()
    # a directory moves into another directory: '..' and both parents' link counts follow
    os.rename(mnt / "empty", d / "sub" / "moved")
    assert os.stat(d / "sub" / "moved" / "..").st_ino == os.stat(d / "sub").st_ino
    assert os.stat(d / "sub").st_nlink == 4
    assert read(d / "sub" / "moved" / "x") == b""


def test_renameat2_noreplace_exchange(mnt: Path) -> None:
    a, b, d = mnt / "a", mnt / "b", mnt / "d"
    write_file(a, b"A")
    write_file(b, b"B")
    d.mkdir()
    write_file(d / "inside", b"I")
    expect_errno(errno.EEXIST, renameat2, a, b, RENAME_NOREPLACE)
    expect_errno(errno.EEXIST, renameat2, a, d, RENAME_NOREPLACE)
    assert read(a) == b"A" and read(b) == b"B"
    renameat2(a, mnt / "c", RENAME_NOREPLACE)
    assert not a.exists() and read(mnt / "c") == b"A"
    ino_b, ino_c = os.stat(b).st_ino, os.stat(mnt / "c").st_ino
    renameat2(b, mnt / "c", RENAME_EXCHANGE)
    assert read(b) == b"A" and read(mnt / "c") == b"B"
    assert os.stat(b).st_ino == ino_c and os.stat(mnt / "c").st_ino == ino_b
    # exchange a file and a directory in different parents
    (mnt / "p").mkdir()
    renameat2(b, d, RENAME_EXCHANGE)
    assert stat.S_ISDIR(os.stat(b).st_mode) and read(b / "inside") == b"I" and read(d) == b"A"
    renameat2(b, mnt / "p" / "x", 0)
    write_file(mnt / "p" / "f", b"F")
    renameat2(mnt / "p" / "x", mnt / "c", RENAME_EXCHANGE)
    assert stat.S_ISDIR(os.stat(mnt / "c").st_mode) and read(mnt / "p" / "x") == b"B"
    assert os.stat(mnt / "c" / "..").st_ino == os.stat(mnt).st_ino
    expect_errno(errno.ENOENT, renameat2, mnt / "c", mnt / "missing", RENAME_EXCHANGE)
    expect_errno(errno.EINVAL, renameat2, mnt / "c", d, RENAME_EXCHANGE | RENAME_NOREPLACE)
    expect_errno(errno.EINVAL, renameat2, mnt / "c", mnt / "c" / "inside", RENAME_EXCHANGE)


# --------------------------------------------------------------------------------------------------
# attributes


def test_chmod_chown(mnt: Path) -> None:
    f, d = mnt / "f", mnt / "d"
    write_file(f, b"x")
    d.mkdir()
    for mode in (0o4755, 0o2750, 0o1777, 0o0, 0o644):
        before = os.stat(f).st_ctime_ns
        tick()
        os.chmod(f, mode)
        st = os.stat(f)
        assert stat.S_IMODE(st.st_mode) == mode and stat.S_ISREG(st.st_mode)
        assert st.st_ctime_ns > before
    os.chmod(d, 0o3777)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o3777
    os.chown(f, 1234, 5678)
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(f, -1, 42)
    assert (os.stat(f).st_uid, os.stat(f).st_gid) == (1234, 42)
    # chown of a regular file clears setuid, and setgid when group-executable
    os.chmod(f, 0o6755)
    os.chown(f, 1000, 1000)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o755
    os.chmod(f, 0o2644)  # setgid without group execute is kept (mandatory-locking marker)
    os.chown(f, 1001, -1)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o2644
    os.chmod(d, 0o2775)  # directories keep both
    os.chown(d, 1000, 1000)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o2775
    # lchown changes the link, not its target
    os.symlink("f", mnt / "l")
    os.chown(mnt / "l", 77, 88, follow_symlinks=False)
    assert (os.lstat(mnt / "l").st_uid, os.lstat(mnt / "l").st_gid) == (77, 88)
    assert os.stat(f).st_uid == 1001
    expect_errno(errno.ENOENT, os.chmod, mnt / "missing", 0o644)


def test_truncate_ftruncate(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"0123456789")
    before = os.stat(f)
    tick()
    os.truncate(f, 4)
    st = os.stat(f)
    assert read(f) == b"0123" and st.st_size == 4
    assert st.st_mtime_ns > before.st_mtime_ns and st.st_ctime_ns > before.st_ctime_ns
    os.truncate(f, 20000)
    assert read(f) == b"0123" + bytes(19996)
    with opened(f, os.O_RDWR) as fd:
        os.ftruncate(fd, 2)
        assert os.fstat(fd).st_size == 2
        os.write(fd, b"abcd")  # at offset 0
        assert os.pread(fd, 100, 0) == b"abcd"
        os.ftruncate(fd, 0)
        assert os.pread(fd, 100, 0) == b""
        os.pwrite(fd, b"z", 9)
    assert read(f) == bytes(9) + b"z"
    with opened(f, os.O_RDONLY) as fd:
        expect_errno(errno.EINVAL, os.ftruncate, fd, 0)
    expect_errno(errno.EINVAL, os.truncate, f, -1)
    (mnt / "d").mkdir()
    expect_errno(errno.EISDIR, os.truncate, mnt / "d", 0)
    expect_errno(errno.ENOENT, os.truncate, mnt / "missing", 0)


def test_utime_now_omit(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"x")
    a_ns, m_ns = 1_234_567_890_123_456_789, 1_300_000_000_987_654_321
    os.utime(f, ns=(a_ns, m_ns))
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (a_ns, m_ns)
    os.utime(f, ns=(-1_000_000_000, 4_102_444_800_000_000_000))  # 1969 and 2100
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (-1_000_000_000, 4_102_444_800_000_000_000)
    os.utime(f, ns=(a_ns, m_ns))
    ctime0 = os.stat(f).st_ctime_ns
    tick()
    utimensat(f, (0, UTIME_OMIT), (1_400_000_000, 5))
    st = os.stat(f)
    assert st.st_atime_ns == a_ns and st.st_mtime_ns == 1_400_000_000_000_000_005
    assert st.st_ctime_ns > ctime0
    t0 = time.time_ns()
    utimensat(f, (0, UTIME_NOW), (0, UTIME_OMIT))
    st = os.stat(f)
    assert abs(st.st_atime_ns - t0) < 5e9 and st.st_mtime_ns == 1_400_000_000_000_000_005
    utimensat(f, (0, UTIME_NOW), (0, UTIME_NOW))
    st = os.stat(f)
    assert abs(st.st_mtime_ns - t0) < 5e9 and abs(st.st_atime_ns - t0) < 5e9
    before = os.stat(f)
    tick()
    utimensat(f, (0, UTIME_OMIT), (0, UTIME_OMIT))
    after = os.stat(f)
    assert (after.st_atime_ns, after.st_mtime_ns) == (before.st_atime_ns, before.st_mtime_ns)
    os.utime(f)  # times=None: both now
    assert abs(os.stat(f).st_mtime_ns - time.time_ns()) < 5e9
    # a symlink's own times
    os.symlink("f", mnt / "l")
    os.utime(mnt / "l", ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
    assert os.lstat(mnt / "l").st_mtime_ns == 6_000_000_000
    assert os.stat(f).st_mtime_ns != 6_000_000_000
    (mnt / "d").mkdir()
    os.utime(mnt / "d", ns=(7, 8))
    assert os.stat(mnt / "d").st_mtime_ns == 8


def test_ctime_changes(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"x")

    def ctime_moves(action, path: Path = f) -> None:
        before = os.lstat(path)
        tick()
        action()
        after = os.lstat(path)
        assert after.st_ctime_ns > before.st_ctime_ns, f"ctime unchanged by {action}"

    ctime_moves(lambda: os.chmod(f, 0o600))
    ctime_moves(lambda: os.chown(f, 0, 0))
    ctime_moves(lambda: os.link(f, mnt / "g"))
    ctime_moves(lambda: os.unlink(mnt / "g"))
    before = os.stat(f)
    tick()
    os.rename(f, mnt / "f2")
    assert os.stat(mnt / "f2").st_ctime_ns > before.st_ctime_ns
    f = mnt / "f2"
    ctime_moves(lambda: os.setxattr(f, "user.k", b"v"), f)
    ctime_moves(lambda: os.removexattr(f, "user.k"), f)
    ctime_moves(lambda: write_file(f, b"rewritten"), f)
    ctime_moves(lambda: os.truncate(f, 1), f)


def test_parent_times_change_on_entry_changes(mnt: Path) -> None:
    d, e = mnt / "d", mnt / "e"
    d.mkdir()
    e.mkdir()

    def parent_times_move(action, *parents: Path) -> None:
        befores = [os.stat(p) for p in parents]
        tick()
        action()
        for p, before in zip(parents, befores):
            after = os.stat(p)
            assert after.st_mtime_ns > before.st_mtime_ns, f"{p} mtime unchanged by {action}"
            assert after.st_ctime_ns > before.st_ctime_ns, f"{p} ctime unchanged by {action}"

    parent_times_move(lambda: write_file(d / "f", b""), d)
    parent_times_move(lambda: os.mkdir(d / "sub"), d)
    parent_times_move(lambda: os.symlink("f", d / "l"), d)
    parent_times_move(lambda: os.link(d / "f", e / "h"), e)
    parent_times_move(lambda: os.mkfifo(d / "p"), d)
    parent_times_move(lambda: os.rename(d / "f", e / "f"), d, e)
    parent_times_move(lambda: os.rename(d / "sub", e / "sub"), d, e)
    parent_times_move(lambda: os.rename(e / "f", e / "f2"), e)
    parent_times_move(lambda: os.unlink(e / "f2"), e)
    parent_times_move(lambda: os.rmdir(e / "sub"), e)
    # writing a file does not touch its directory
    write_file(d / "w", b"")
    before = os.stat(d)
    tick()
    write_file(d / "w", b"data")
    assert os.stat(d).st_mtime_ns == before.st_mtime_ns


# --------------------------------------------------------------------------------------------------
# statfs, orphans, persistence


def test_statvfs_counts(mnt: Path, mount_fs) -> None:
    s0 = os.statvfs(mnt)
    assert s0.f_bsize > 0 and s0.f_frsize > 0
    assert s0.f_blocks >= s0.f_bfree >= s0.f_bavail >= 0 and s0.f_blocks > 0
    assert s0.f_files >= s0.f_ffree > 0
    assert s0.f_namemax == 255
    for i in range(10):
        write_file(mnt / f"f{i}", b"x")
    s1 = os.statvfs(mnt)
    used0, used1 = s0.f_files - s0.f_ffree, s1.f_files - s1.f_ffree
    if mount_fs.target != "local":  # the local disk's count moves with everything else on it
        assert used1 - used0 == 10, f"inodes in use went {used0} → {used1} after 10 creates"
    for i in range(10):
        os.unlink(mnt / f"f{i}")
    if mount_fs.target != "local":  # unlinked inodes are freed once the kernel forgets them
        wait_inodes_used(mnt, used0)


def test_open_unlinked_file_lives_until_close(mnt: Path, mount_fs) -> None:
    f = mnt / "f"
    write_file(f, b"before ")
    used0 = inodes_used(mnt)
    fd = os.open(f, os.O_RDWR)
    try:
        os.unlink(f)
        assert not f.exists() and os.listdir(mnt) == []
        assert os.fstat(fd).st_nlink == 0
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, b"after unlink")
        assert os.pread(fd, 100, 0) == b"before after unlink"
        os.ftruncate(fd, 6)
        assert os.fstat(fd).st_size == 6 and os.pread(fd, 100, 0) == b"before"
        fd2 = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)  # reopen through procfs still works
        assert os.read(fd2, 100) == b"before"
        os.close(fd2)
        write_file(f, b"a new file with the same name")
        assert os.pread(fd, 100, 0) == b"before"
    finally:
        os.close(fd)
    assert read(f) == b"a new file with the same name"
    os.unlink(f)
    if mount_fs.target != "local":  # the orphan is reclaimed after the last close
        wait_inodes_used(mnt, used0 - 1)


def test_namespace_survives_remount(mnt: Path, mount_fs) -> None:
    make_sample_tree(mnt / "tree")
    os.mkfifo(mnt / "fifo")
    os.setxattr(mnt / "tree", "user.dir", b"on a dir")
    before = manifest(mnt)
    ino = os.stat(mnt / "tree" / "a" / "f1.bin").st_ino
    mnt = mount_fs.remount(mnt)
    assert manifest(mnt) == before
    assert os.stat(mnt / "tree" / "a" / "f1.bin").st_ino == ino
    assert os.stat(mnt / "tree" / "a" / "hardlink.bin").st_ino == ino
    assert os.getxattr(mnt / "tree", "user.dir") == b"on a dir"
    assert os.getxattr(mnt / "tree" / "a" / "f3.bin", "user.origin") == b"sample"


def test_times_of_new_and_untouched_inodes(mnt: Path) -> None:
    t0 = time.time_ns()
    write_file(mnt / "f", b"")
    os.mkdir(mnt / "d")
    os.symlink("f", mnt / "l")
    for name in ("f", "d", "l"):
        st = os.lstat(mnt / name)
        assert abs(st.st_mtime_ns - t0) < 5e9 and abs(st.st_atime_ns - t0) < 5e9, name
        assert st.st_ctime_ns == st.st_mtime_ns, name
    os.utime(mnt / "f", ns=(10**18, 10**18))
    parent, child = os.stat(mnt), os.stat(mnt / "f")
    tick()
    # opening an existing file with O_CREAT changes neither it nor its directory
    os.close(os.open(mnt / "f", os.O_CREAT | os.O_WRONLY))
    assert os.stat(mnt / "f").st_mtime_ns == 10**18 and os.stat(mnt / "f").st_ctime_ns == child.st_ctime_ns
    assert os.stat(mnt).st_mtime_ns == parent.st_mtime_ns
    # failed operations change nothing
    expect_errno(errno.EEXIST, os.mkdir, mnt / "d")
    expect_errno(errno.ENOENT, os.unlink, mnt / "missing")
    assert os.stat(mnt).st_mtime_ns == parent.st_mtime_ns
    assert os.stat(mnt / "f").st_ctime_ns == child.st_ctime_ns
    # rename keeps the file's own mtime
    os.rename(mnt / "f", mnt / "g")
    assert os.stat(mnt / "g").st_mtime_ns == 10**18


def test_path_limits_and_components(mnt: Path) -> None:
    deep = mnt
    for i in range(60):
        deep = deep / f"level{i:02d}-{'x' * 50}"
    os.makedirs(deep)
    write_file(deep / "leaf", b"deep")
    assert (deep / "leaf").read_bytes() == b"deep" and len(str(deep)) > 3000
    expect_errno(errno.ENAMETOOLONG, os.stat, str(mnt) + "/" + "/".join(["a" * 200] * 21))
    write_file(mnt / "file", b"")
    expect_errno(errno.ENOTDIR, os.stat, mnt / "file" / "x" / "y")
    expect_errno(errno.ENOTDIR, os.stat, str(mnt / "file") + "/")
    expect_errno(errno.ENOENT, os.stat, mnt / "missing" / "x")
    assert os.stat(str(mnt / deep.relative_to(mnt).parts[0]) + "/").st_ino == os.stat(
        mnt / deep.relative_to(mnt).parts[0]).st_ino


def test_sizes_blocks_and_inode_numbers(mnt: Path) -> None:
    write_file(mnt / "f", os.urandom(10000))
    st = os.stat(mnt / "f")
    assert st.st_size == 10000 and st.st_blksize > 0
    assert st.st_blocks * 512 >= 10000, f"st_blocks {st.st_blocks} does not cover 10000 bytes"
    write_file(mnt / "empty", b"")
    assert os.stat(mnt / "empty").st_blocks == 0
    assert os.stat(mnt / "f").st_ino != os.stat(mnt / "empty").st_ino != os.stat(mnt).st_ino
    # symlink and directory sizes are reported
    os.symlink("a" * 77, mnt / "l")
    assert os.lstat(mnt / "l").st_size == 77
    assert os.stat(mnt).st_size >= 0
