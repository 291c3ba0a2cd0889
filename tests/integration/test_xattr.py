"""Extended attributes through the kernel: flags, errno values, sizes, namespaces (as root)."""

from __future__ import annotations

import errno
import os
import struct
import time
from pathlib import Path

import pytest

from ._util import expect_errno, getxattr_sized, listxattr_sized, write_file

pytestmark = pytest.mark.chaos


def test_xattr_set_get_list_remove(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"")
    assert os.listxattr(f) == []
    os.setxattr(f, "user.a", b"alpha")
    os.setxattr(f, "user.empty", b"")
    os.setxattr(f, "user.bin", bytes(range(256)))
    assert os.getxattr(f, "user.a") == b"alpha"
    assert os.getxattr(f, "user.empty") == b""
    assert os.getxattr(f, "user.bin") == bytes(range(256))
    assert sorted(os.listxattr(f)) == ["user.a", "user.bin", "user.empty"]
    os.setxattr(f, "user.a", b"replaced")
    assert os.getxattr(f, "user.a") == b"replaced"
    expect_errno(errno.EEXIST, os.setxattr, f, "user.a", b"x", os.XATTR_CREATE)
    expect_errno(errno.ENODATA, os.setxattr, f, "user.new", b"x", os.XATTR_REPLACE)
    os.setxattr(f, "user.a", b"third", os.XATTR_REPLACE)
    os.setxattr(f, "user.new", b"created", os.XATTR_CREATE)
    assert os.getxattr(f, "user.a") == b"third" and os.getxattr(f, "user.new") == b"created"
    expect_errno(errno.ENODATA, os.getxattr, f, "user.missing")
    expect_errno(errno.ENODATA, os.removexattr, f, "user.missing")
    os.removexattr(f, "user.a")
    expect_errno(errno.ENODATA, os.getxattr, f, "user.a")
    assert sorted(os.listxattr(f)) == ["user.bin", "user.empty", "user.new"]
    expect_errno(errno.ENOENT, os.getxattr, mnt / "missing", "user.a")


def test_xattr_buffer_sizes_and_limits(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"")
    os.setxattr(f, "user.ten", b"0123456789")
    assert getxattr_sized(f, "user.ten", 0) == 10  # size query
    assert getxattr_sized(f, "user.ten", 10) == 10
    expect_errno(errno.ERANGE, getxattr_sized, f, "user.ten", 9)
    names_len = len(b"user.ten\0")
    assert listxattr_sized(f, 0) == names_len
    expect_errno(errno.ERANGE, listxattr_sized, f, names_len - 1)
    expect_errno(errno.E2BIG, os.setxattr, f, "user.huge", b"x" * 65537)
    expect_errno(errno.ERANGE, os.setxattr, f, "user." + "n" * 251, b"x")  # name > 255 bytes
    os.setxattr(f, "user." + "n" * 250, b"longest name")
    assert os.getxattr(f, "user." + "n" * 250) == b"longest name"
    f = mnt / "g"  # a fresh file: ext4 keeps all of one inode's xattrs in one 4 KiB block
    write_file(f, b"")
    value = os.urandom(4000)
    os.setxattr(f, "user.4k", value)
    assert os.getxattr(f, "user.4k") == value
    # the VFS allows 64 KiB values; a filesystem may store them or refuse with ENOSPC/E2BIG (ext4)
    big = os.urandom(65536)
    try:
        os.setxattr(f, "user.64k", big)
    except OSError as exc:
        assert exc.errno in (errno.ENOSPC, errno.E2BIG), exc
    else:
        assert os.getxattr(f, "user.64k") == big
    expect_errno(errno.EOPNOTSUPP, os.setxattr, f, "nonamespace.x", b"x")
    many = {f"user.k{i:03d}": b"v%d" % i for i in range(100)}
    d = mnt / "d"
    d.mkdir()
    for k, v in many.items():
        os.setxattr(d, k, v)
    assert sorted(os.listxattr(d)) == sorted(many)
    assert all(os.getxattr(d, k) == v for k, v in many.items())


def test_xattr_namespaces_as_root(mnt: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("trusted.* needs CAP_SYS_ADMIN")
    f = mnt / "f"
    write_file(f, b"")
    os.setxattr(f, "trusted.t", b"root only")
    os.setxattr(f, "security.s", b"sec")
    assert os.getxattr(f, "trusted.t") == b"root only"
    assert os.getxattr(f, "security.s") == b"sec"
    assert {"trusted.t", "security.s"} <= set(os.listxattr(f))
    os.removexattr(f, "trusted.t")
    expect_errno(errno.ENODATA, os.getxattr, f, "trusted.t")


def test_xattr_on_other_file_types(mnt: Path) -> None:
    d, f = mnt / "d", mnt / "f"
    d.mkdir()
    write_file(f, b"")
    os.symlink("f", mnt / "l")
    os.mkfifo(mnt / "p")
    os.setxattr(d, "user.on_dir", b"d")
    assert os.getxattr(d, "user.on_dir") == b"d"
    os.setxattr(mnt / "l", "user.via_link", b"target")  # follows the link
    assert os.getxattr(f, "user.via_link") == b"target"
    # user.* xattrs exist only on regular files and directories
    expect_errno(errno.EPERM, os.setxattr, mnt / "l", "user.x", b"x", follow_symlinks=False)
    expect_errno(errno.EPERM, os.setxattr, mnt / "p", "user.x", b"x")
    assert "user.via_link" not in os.listxattr(mnt / "l", follow_symlinks=False)
    if os.geteuid() == 0:
        os.setxattr(mnt / "l", "trusted.on_link", b"l", follow_symlinks=False)
        assert os.getxattr(mnt / "l", "trusted.on_link", follow_symlinks=False) == b"l"


def test_xattr_follows_the_inode(mnt: Path) -> None:
    f = mnt / "f"
    write_file(f, b"")
    os.setxattr(f, "user.k", b"v")
    os.link(f, mnt / "g")
    assert os.getxattr(mnt / "g", "user.k") == b"v"
    os.rename(f, mnt / "renamed")
    assert os.getxattr(mnt / "renamed", "user.k") == b"v"
    os.setxattr(mnt / "g", "user.k", b"changed")
    assert os.getxattr(mnt / "renamed", "user.k") == b"changed"
    fd = os.open(mnt / "g", os.O_RDONLY)
    try:
        os.setxattr(fd, "user.fd", b"via fd")
        assert os.getxattr(fd, "user.fd") == b"via fd"
        ctime = os.fstat(fd).st_ctime_ns
        time.sleep(0.02)
        os.removexattr(fd, "user.fd")
        assert os.fstat(fd).st_ctime_ns > ctime
    finally:
        os.close(fd)


def test_a_write_drops_file_capabilities_set_while_the_file_is_open(mnt: Path) -> None:
    """The kernel asks for security.capability before each write and removes it if present; the
    daemon remembers "absent" for an open file, so a capability set meanwhile must clear that."""
    f = mnt / "f"
    caps = struct.pack("<5I", 0x02000000, 1 << 10, 0, 0, 0)  # VFS_CAP_REVISION_2, cap_net_bind_service
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o755)
    try:
        os.write(fd, b"first")  # the answer "no capability" is remembered now
        os.setxattr(f, "security.capability", caps)
        assert os.getxattr(f, "security.capability") == caps
        os.write(fd, b" second")
        assert "security.capability" not in os.listxattr(f)
        os.setxattr(f, "security.capability", caps)
        os.write(fd, b" third")
        assert "security.capability" not in os.listxattr(f)
    finally:
        os.close(fd)
    assert f.read_bytes() == b"first second third"
