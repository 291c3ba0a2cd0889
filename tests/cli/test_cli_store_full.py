"""A full disk under the embedded store: commits fail cleanly (rolled back, the store usable once space
is back) and a mount answers ENOSPC, not EIO."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusefs.boundary import errno_of
from metadata.disk_reserve import RESERVE_BYTES, DiskReserve
from metadata.sqlite_store import _RESERVE_CHECK_COMMITS, SqliteStore
from metadata.store import StoreFull, Transaction


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Too small for the store's space reserve."""
    with _tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


@pytest.fixture
def store_disk(tmp_path: Path) -> Iterator[Path]:
    """Room for a store and its space reserve (and as much again: the room the reserve is made in)."""
    with _tmpfs(tmp_path / "store-disk", "32m") as disk:
        yield disk


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
        assert not (small_disk / "meta.db.reserve").exists()  # no room for it: not an error either
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


def _fill_store(store: SqliteStore) -> int:
    """Keys with inline-sized values, then small ones, until not even a small commit fits; how many."""
    n = 0
    for size in (60000, 100):
        for _ in range(10000):
            try:
                store.transact(lambda tr, n=n, size=size: tr.set(b"k%06d" % n, os.urandom(size)))
            except StoreFull:
                break
            n += 1
        else:
            raise AssertionError("the disk never filled")
    return n


def _delete(key: bytes) -> Callable[[Transaction], None]:
    def delete(tr: Transaction) -> None:
        tr.frees_space = True  # as unlink, rmdir, reclaim and truncate say
        tr.clear(key)

    return delete


def test_deletions_spend_the_reserve_on_a_full_disk_and_other_commits_do_not(store_disk: Path) -> None:
    reserve = store_disk / "meta.db.reserve"
    store = SqliteStore(str(store_disk / "meta.db"))
    try:
        made = reserve.stat()
        assert made.st_size == RESERVE_BYTES and made.st_blocks * 512 >= RESERVE_BYTES  # allocated
        assert stat.S_IMODE(made.st_mode) == 0o600
        count = _fill_store(store)
        with pytest.raises(StoreFull):
            store.transact(lambda tr: tr.set(b"more", b"v"))
        with pytest.raises(StoreFull):  # a deletion without the hint is an ordinary commit
            store.transact(lambda tr: tr.clear(b"k000000"))
        assert reserve.exists()  # kept for the deletions
        for n in range(count):
            store.transact(_delete(b"k%06d" % n))
        assert reserve.exists()  # made again once the deletions gave the disk room
        for n in range(20):
            store.transact(lambda tr, n=n: tr.set(b"n%06d" % n, bytes(60000)))
        keys = store.transact(lambda tr: [key for key, _ in tr.get_range(b"", b"\xff")])
        assert keys == [b"n%06d" % n for n in range(20)]
    finally:
        store.close()


def test_the_reserve_is_made_again_when_other_files_give_room(store_disk: Path) -> None:
    """Room that comes from outside the store is noticed too, every _RESERVE_CHECK_COMMITS commits (not
    on every commit: the sole owner's commits pay nothing for the reserve while it is there)."""
    reserve = store_disk / "meta.db.reserve"
    store = SqliteStore(str(store_disk / "meta.db"))
    try:
        store.transact(lambda tr: tr.set(b"doomed", os.urandom(60000)))
        filler = fill(store_disk)
        store.transact(_delete(b"doomed"))  # spends the reserve; too little room to make it again
        assert not reserve.exists()
        filler.unlink()
        for n in range(_RESERVE_CHECK_COMMITS - 1):
            store.transact(lambda tr, n=n: tr.set(b"k%06d" % n, b"v"))
        assert not reserve.exists()
        store.transact(lambda tr: tr.set(b"last", b"v"))
        assert reserve.exists()
    finally:
        store.close()


def test_the_processes_of_a_shared_store_share_one_reserve(store_disk: Path) -> None:
    path = str(store_disk / "meta.db")
    first, second = SqliteStore(path, shared=True), SqliteStore(path, shared=True)
    try:
        count = _fill_store(first)
        second.transact(_delete(b"k000000"))  # spends the reserve the first one made
        first.transact(_delete(b"k000001"))  # finds it spent: the room it left does
        for n in range(2, count):
            (first if n % 2 else second).transact(_delete(b"k%06d" % n))
        assert (store_disk / "meta.db.reserve").exists()
        first.transact(lambda tr: tr.set(b"after", b"v"))
        assert second.transact(lambda tr: tr.get_range(b"", b"\xff")) == [(b"after", b"v")]
    finally:
        first.close()
        second.close()


def test_the_reserve_is_made_by_one_and_released_by_one(store_disk: Path) -> None:
    reserve = DiskReserve(str(store_disk / "r"), 1 << 20)
    other = DiskReserve(str(store_disk / "r"), 1 << 20)
    assert reserve.ensure()
    inode = os.stat(reserve.path).st_ino
    assert other.ensure() and os.stat(reserve.path).st_ino == inode  # already there: left alone
    assert other.release()
    assert not reserve.release()  # the space is back already: nothing to do, nothing wrong


def test_a_reserve_that_cannot_be_allocated_is_not_left_half_made(store_disk: Path) -> None:
    reserve = DiskReserve(str(store_disk / "r"), 4 << 20)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, limits[1]))  # fallocate fails: EFBIG
    try:
        assert not reserve.ensure()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert not os.path.exists(reserve.path)


def _walk(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` through the mount, by relative path, with its contents."""
    found = {}
    for where, _, files in os.walk(root):
        for name in files:
            path = Path(where) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"still not {what}"
        time.sleep(0.05)


#: What frees space, run on the full disk: (command, with paths relative to the mount; what it leaves of
#: "tree", "big" and the first two files that filled the disk).
FREEING = {
    "rm-inline": (["rm", "f0"], {"tree", "big", "f1"}),
    "rm-large": (["rm", "big"], {"tree", "f0", "f1"}),
    "rm-rf": (["rm", "-rf", "tree"], {"big", "f0", "f1"}),
    "truncate": (["truncate", "-s", "0", "f0"], {"tree", "big", "f0", "f1"}),
    "truncate-large": (["truncate", "-s", "0", "big"], {"tree", "big", "f0", "f1"}),
    "truncate-path": ([sys.executable, "-c", "import os; os.truncate('f0', 0)"], {"tree", "big", "f0", "f1"}),
}
TREE = {f"tree/{directory}/t{n}" for directory in ("a/b", "c") for n in range(5)}


@pytest.mark.parametrize("freeing", FREEING)
@pytest.mark.parametrize("options", [(), ("-o", "shared")], ids=["sole", "shared"])
def test_rm_frees_space_on_a_full_store_disk(
    cli, tmp_path: Path, store_disk: Path, fuse_mountpoint: Path, options: tuple[str, ...], freeing: str
) -> None:
    url = f"sqlite://{store_disk}/meta.db"
    reserve = store_disk / "meta.db.reserve"
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    assert cli("mkfs", "--store", url, "--blocks", str(blocks)).returncode == 0
    log = tmp_path / "daemon.log"  # off the full disk
    mounted = cli("mount", *options, "--store", url, "--log-file", str(log), str(fuse_mountpoint))
    assert mounted.returncode == 0, mounted.stderr
    mnt = fuse_mountpoint
    command, left = FREEING[freeing]
    try:
        assert reserve.exists()
        for directory in ("tree/a/b", "tree/c"):
            (mnt / directory).mkdir(parents=True)
            for n in range(5):
                (mnt / directory / f"t{n}").write_bytes(os.urandom(20000))
        (mnt / "big").write_bytes(os.urandom(3 << 20))  # chunked: its records in the store, data not
        with pytest.raises(OSError) as caught:
            for n in range(5000):  # small files live in the store: until the WAL cannot grow
                (mnt / f"f{n}").write_bytes(os.urandom(60000))
        assert caught.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as caught:  # nor a small file: the disk is full
            for n in range(5000):
                (mnt / f"s{n}").write_bytes(b"s")
        assert caught.value.errno == errno.ENOSPC
        assert reserve.exists()  # creates never spend it
        freed = subprocess.run(command, cwd=mnt, capture_output=True, text=True)
        assert freed.returncode == 0, freed.stderr
        # Make room for the reserve: remove what filled the disk (the tree and big are another test's).
        filled = [path.name for path in mnt.iterdir() if path.name[0] in "fs" and path.name not in left]
        removed = subprocess.run(["rm", "-f", *filled], cwd=mnt, capture_output=True, text=True)
        assert removed.returncode == 0, removed.stderr
        # An unlinked inode may be reclaimed only once the kernel forgets it.
        _wait_for(reserve.exists, "made again")
        written = {f"after{n}": os.urandom(60000) for n in range(20)}
        for name, data in written.items():
            (mnt / name).write_bytes(data)
        found = _walk(mnt)  # the store is consistent: every name leads to a readable file
        assert set(found) == (left - {"tree"}) | (TREE if "tree" in left else set()) | set(written)
        assert all(found[name] == data for name, data in written.items())
        assert all(len(found[name]) == 20000 for name in TREE & set(found))
        assert len(found.get("big", b"")) == (0 if freeing == "truncate-large" else 3 << 20) * (
            "big" in found
        )
        assert len(found["f1"]) == 60000
        if "f0" in left:
            assert len(found["f0"]) == (
                0 if freeing.startswith("truncate") and freeing != "truncate-large" else 60000
            )
    finally:
        assert cli("umount", str(fuse_mountpoint)).returncode == 0
    text = log.read_text()
    assert "Traceback" not in text and "cannot rollback" not in text, text[-3000:]
