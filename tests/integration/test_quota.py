"""Directory quotas through a mount: ``fusefs quota`` on a mounted path, EDQUOT from creat(2) and from
the write(2) or truncate that would grow a file past the quota (and from the close whose flush would, when
another writer took the room meanwhile, committing nothing), usage after unlink, renames between quota
directories, ``quota check``."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ._util import expect_errno, write_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def qmnt(mount_fs) -> Path:
    if mount_fs.target != "fusefs":
        pytest.skip("directory quotas are fusefs's")
    return mount_fs()


def quota(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "fusefs", "quota", *args],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (res.returncode == 0) == ok, f"quota {args}: rc {res.returncode}\n{res.stdout}{res.stderr}"
    return res


def test_creat_and_write_hit_the_quota(qmnt: Path) -> None:
    q = qmnt / "q"
    q.mkdir()
    write_file(q / "before", b"x" * 100)
    out = quota("set", str(q), "--bytes", "1000", "--inodes", "3").stdout
    assert "bytes 100/1000, inodes 1/3" in out
    (q / "sub").mkdir()
    write_file(q / "sub" / "f", b"")
    expect_errno(errno.EDQUOT, os.open, q / "sub" / "g", os.O_CREAT | os.O_WRONLY, 0o644)
    assert sorted(os.listdir(q / "sub")) == ["f"]
    fd = os.open(q / "sub" / "f", os.O_WRONLY)
    try:
        os.write(fd, b"y" * 800)
        os.fsync(fd)
        expect_errno(errno.EDQUOT, os.write, fd, b"z" * 101)  # 1001 bytes: over, at the write
        expect_errno(errno.EDQUOT, os.ftruncate, fd, 1001)
        os.write(fd, b"z" * 100)  # exactly the limit
    finally:
        os.close(fd)
    assert (q / "sub" / "f").read_bytes() == b"y" * 800 + b"z" * 100
    assert "bytes 1000/1000, inodes 3/3" in quota("get", str(q)).stdout
    write_file(qmnt / "outside", b"o" * 5000)  # no quota there


def test_programs_get_edquot_at_write_and_creat(qmnt: Path) -> None:
    q = qmnt / "q"
    q.mkdir()
    quota("set", str(q), "--bytes", "1M", "--inodes", "3")
    # A large file (chunked): dd's 17th 64 KiB write would pass 1 MiB.
    dd = subprocess.run(
        ["dd", "if=/dev/zero", f"of={q / 'big'}", "bs=64K", "count=40"], capture_output=True, text=True
    )
    assert dd.returncode == 1 and "Disk quota exceeded" in dd.stderr, dd.stderr
    assert (q / "big").stat().st_size == 1 << 20
    assert "bytes 1048576/1048576, inodes 1/3" in quota("get", str(q)).stdout
    os.truncate(q / "big", 1000)
    shell = subprocess.run(
        ["sh", "-c", f"head -c 2000 /dev/zero > {q / 'small'}"], capture_output=True, text=True
    )
    assert shell.returncode == 0, shell.stderr
    subprocess.run(["touch", str(q / "third")], check=True)
    touch = subprocess.run(["touch", str(q / "fourth")], capture_output=True, text=True)
    assert touch.returncode == 1 and "Disk quota exceeded" in touch.stderr, touch.stderr
    assert sorted(os.listdir(q)) == ["big", "small", "third"]
    assert "bytes 3000/1048576, inodes 3/3" in quota("get", str(q)).stdout


def test_a_close_over_the_quota_commits_no_growth(qmnt: Path) -> None:
    """Each writer's room was there when it wrote; the close that finds it taken fails with EDQUOT and
    keeps the file's stored size: the growth is dropped, writes inside the old size stay (a large file's
    chunk written in place reads back whole, never EIO)."""
    q = qmnt / "q"
    q.mkdir()
    write_file(q / "small", b"")
    write_file(q / "large", b"o" * 100_000)  # chunked: past the 64 KiB inline threshold
    quota("set", str(q), "--bytes", "101000")
    small, large = os.open(q / "small", os.O_WRONLY), os.open(q / "large", os.O_WRONLY)
    try:
        os.write(small, b"s" * 600)
        os.pwrite(large, b"N" * 50, 10)
        os.pwrite(large, b"G" * 600, 100_000)
        write_file(q / "other", b"x" * 600)  # another file takes the room meanwhile
    finally:
        expect_errno(errno.EDQUOT, os.close, small)
        expect_errno(errno.EDQUOT, os.close, large)
    assert (q / "small").read_bytes() == b""
    expected = b"o" * 10 + b"N" * 50 + b"o" * (100_000 - 60)
    assert hashlib.sha256((q / "large").read_bytes()).digest() == hashlib.sha256(expected).digest()
    assert "bytes 100600/101000, inodes 3/unlimited" in quota("get", str(q)).stdout


def test_usage_after_unlink_and_renames(qmnt: Path) -> None:
    a, b, free = qmnt / "a", qmnt / "b", qmnt / "free"
    for d in (a, b, free):
        d.mkdir()
    write_file(a / "f", b"x" * 10)
    quota("set", str(a), "--inodes", "10")
    quota("set", str(b), "--bytes", "1M")
    expect_errno(errno.EXDEV, os.rename, a / "f", b / "f")
    expect_errno(errno.EXDEV, os.rename, a / "f", free / "f")
    expect_errno(errno.EXDEV, os.link, a / "f", b / "l")
    subprocess.run(["mv", str(a / "f"), str(b / "f")], check=True)  # mv copies across: usage moves
    assert "bytes 0/unlimited, inodes 0/10" in quota("get", str(a)).stdout
    assert "bytes 10/1048576, inodes 1/unlimited" in quota("get", str(b)).stdout
    os.unlink(b / "f")
    assert "bytes 0/1048576, inodes 0/unlimited" in quota("get", str(b)).stdout
    listed = quota("list", str(qmnt)).stdout.splitlines()
    assert len(listed) == 2
    quota("unset", str(b))
    assert len(quota("list", str(qmnt)).stdout.splitlines()) == 1
    res = quota("get", str(b), ok=False)
    assert res.stderr.strip() == f"fusefs: error: {b}: no quota here"


def test_quota_check_recounts(qmnt: Path, mount_fs) -> None:
    q = qmnt / "q"
    q.mkdir()
    quota("set", str(q), "--bytes", "1G")
    write_file(q / "f", b"x" * 123)
    assert "bytes 123/1073741824, inodes 1/unlimited" in quota("check", str(qmnt)).stdout


def test_quota_command_errors(qmnt: Path, tmp_path: Path) -> None:
    write_file(qmnt / "file", b"")
    assert (
        quota("set", str(qmnt / "file"), "--bytes", "1", ok=False)
        .stderr.strip()
        .endswith("a quota is set on a directory")
    )
    res = quota("set", str(tmp_path), "--bytes", "1", ok=False)
    assert "is not inside a mounted fusefs" in res.stderr
    assert quota("set", str(qmnt), ok=False).returncode == 2
    assert quota("get", ok=False).returncode == 2


def test_quotas_of_an_unmounted_filesystem(tmp_path: Path) -> None:
    store = "sqlite://" + str(tmp_path / "meta.db")
    (tmp_path / "blocks").mkdir()
    subprocess.run(
        [sys.executable, "-m", "fusefs", "mkfs", "--store", store, "--blocks", str(tmp_path / "blocks"), "q"],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=True,
        capture_output=True,
    )
    where = ("--store", store, "--name", "q")
    assert quota("set", *where, "/", "--inodes", "7").stdout == "inode 1: bytes 0/unlimited, inodes 0/7\n"
    assert (
        quota("list", *where).stdout
        == quota("check", *where).stdout
        == "inode 1: bytes 0/unlimited, inodes 0/7\n"
    )
    quota("unset", *where, "/")
    assert quota("list", *where).stdout == ""
    assert quota("get", *where, "/", ok=False).stderr.strip() == "fusefs: error: /: no quota here"
    res = quota("set", *where, "/missing", "--bytes", "1", ok=False)
    assert res.stderr.strip() == "fusefs: error: /missing: no such file or directory"
    assert quota("list", ok=False).returncode == 2  # neither PATH nor --store
