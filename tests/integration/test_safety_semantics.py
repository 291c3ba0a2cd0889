"""Answers that used to differ from a local filesystem's: renameat2 with RENAME_WHITEOUT, xattr names
that are a bare namespace prefix, and st_blocks of a file still open for writing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ._util import RENAME_NOREPLACE, RENAME_WHITEOUT, expect_errno, renameat2

MiB = 1 << 20


def test_rename_whiteout_is_refused_not_done_as_a_plain_rename(mnt: Path, fs_target: str) -> None:
    if fs_target == "local":
        pytest.skip("ext4 implements whiteouts; fusefs refuses them")
    (mnt / "old").write_bytes(b"data")
    for flags in (RENAME_WHITEOUT, RENAME_WHITEOUT | RENAME_NOREPLACE):
        expect_errno(errno.EINVAL, renameat2, mnt / "old", mnt / "new", flags)
        assert (mnt / "old").read_bytes() == b"data"
        assert not (mnt / "new").exists()


def test_rename_whiteout_by_an_unprivileged_user_is_refused_too(
    mnt_shared: Path, unpriv_user, fs_target: str
) -> None:
    """Linux lets unprivileged users make whiteouts (since 5.8): the filesystem decides, for everyone."""
    if fs_target == "local":
        pytest.skip("ext4 implements whiteouts; fusefs refuses them")
    d = mnt_shared / "d"
    d.mkdir()
    os.chown(d, unpriv_user.uid, unpriv_user.gid)
    (d / "old").write_bytes(b"data")
    os.chown(d / "old", unpriv_user.uid, unpriv_user.gid)
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"ret = libc.renameat2(-100, b'{d}/old', -100, b'{d}/new', {RENAME_WHITEOUT})\n"
        "print(ret, ctypes.get_errno())\n"
    )
    assert unpriv_user.py(code) == f"-1 {errno.EINVAL}"
    assert (d / "old").read_bytes() == b"data"
    assert not (d / "new").exists()


@pytest.mark.parametrize("prefix", ["user.", "trusted.", "security."])
def test_a_bare_namespace_prefix_is_an_invalid_xattr_name(mnt: Path, prefix: str) -> None:
    f = mnt / "f"
    f.write_bytes(b"")
    expect_errno(errno.EINVAL, os.setxattr, f, prefix, b"v")
    expect_errno(errno.EINVAL, os.getxattr, f, prefix)
    expect_errno(errno.EINVAL, os.removexattr, f, prefix)
    # An unknown namespace stays unsupported.
    expect_errno(errno.EOPNOTSUPP, os.setxattr, f, prefix.rstrip("."), b"v")


@pytest.mark.parametrize(
    ("size", "piece"),
    [(MiB, MiB), (4 * MiB + 4096, 128 * 1024), (200 * 1024, 4096), (3000, 3000)],
    ids=["1MiB-at-once", "4MiB-in-128KiB", "200KiB-in-4KiB", "small"],
)
def test_st_blocks_counts_data_written_to_a_file_still_open(mnt: Path, size: int, piece: int) -> None:
    data = os.urandom(size)
    fd = os.open(mnt / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for start in range(0, size, piece):
            os.write(fd, data[start : start + piece])
        # As on ext4 (delayed allocation counts what is written): at least the data, in 512-byte units.
        assert os.fstat(fd).st_blocks * 512 >= size
        assert os.stat(mnt / "f").st_blocks * 512 >= size
    finally:
        os.close(fd)
    assert os.stat(mnt / "f").st_blocks * 512 >= size
