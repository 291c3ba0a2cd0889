"""A full disk under the embedded store: commits fail cleanly (rolled back, the store usable once space
is back) and a mount answers ENOSPC, not EIO."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusefs.boundary import errno_of
from metadata.sqlite_store import SqliteStore
from metadata.store import StoreFull


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_commit_on_a_full_disk_fails_cleanly(small_disk: Path) -> None:
    store = SqliteStore(str(small_disk / "meta.db"))
    try:
        store.transact(lambda tr: tr.set(b"kept", b"v"))
        filler = fill(small_disk)
        with pytest.raises(StoreFull, match="the disk holding the store is full") as caught:
            for n in range(100):  # until the WAL cannot grow
                store.transact(lambda tr, n=n: tr.set(b"k%d" % n, os.urandom(60000)))
        assert errno_of(caught.value) == errno.ENOSPC
        filler.unlink()
        store.transact(lambda tr: tr.set(b"after", b"v"))  # usable again: nothing was left half done
        assert store.transact(lambda tr: (tr.get(b"kept"), tr.get(b"after"))) == (b"v", b"v")
    finally:
        store.close()


def test_a_mount_answers_enospc_when_the_store_disk_is_full(
    cli, tmp_path: Path, small_disk: Path, fuse_mountpoint: Path
) -> None:
    url = f"sqlite://{small_disk}/meta.db"
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    assert cli("mkfs", "--store", url, "--blocks", str(blocks)).returncode == 0
    log = tmp_path / "daemon.log"  # off the full disk
    mounted = cli("mount", "--store", url, "--log-file", str(log), str(fuse_mountpoint))
    assert mounted.returncode == 0, mounted.stderr
    try:
        filler = fill(small_disk)
        with pytest.raises(OSError) as caught:
            for n in range(2000):  # small files live in the store: until the WAL cannot grow
                (fuse_mountpoint / f"f{n}").write_bytes(os.urandom(60000))
        assert caught.value.errno == errno.ENOSPC
        filler.unlink()
        (fuse_mountpoint / "after").write_bytes(b"space again")
        assert (fuse_mountpoint / "after").read_bytes() == b"space again"
    finally:
        assert cli("umount", str(fuse_mountpoint)).returncode == 0
    text = log.read_text()
    assert "Traceback" not in text and "cannot rollback" not in text, text[-3000:]
