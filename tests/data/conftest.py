"""Fixtures for the file-data tests: mounts with chosen mkfs settings, block directories on a tmpfs,
kill -9 of the daemon and remount, and direct looks at the block directory and the store.

Everything here drives the shared ``mount_fs`` factory of tests/conftest.py (mkfs, mount, log checks,
teardown); this module only adds what the data tests need on top of it.  The tests need a real fusefs
mount (they look at chunk files and kill the daemon): on the local or bindfs targets they are skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks.layout import CHUNK_SUFFIX, parse_chunk_name

#: Settings that move a file from inline to chunks (8 KiB) and across chunks (64 KiB) all the time.
SMALL = {"inline_max": 8192, "chunk_size": 65536}


class DataMounts:
    """``data_mounts.mount(inline_max=..., chunk_size=..., blocks_tmpfs="8m", block_dirs=2,
    options=("strict",), env={...}, mkfs_args=(...))`` → mountpoint (``block_dirs``: how many block
    directories, each a tmpfs of ``blocks_tmpfs`` if given; ``env``: extra environment of its daemon and
    commands; ``mkfs_args``: more mkfs options), plus:
    ``kill(mp)`` (SIGKILL the daemon, lazy-unmount the dead mount), ``start(mp)`` (mount again after a
    kill), ``remount(mp)``, ``unmount(mp)``, ``cli(mp, "gc")``, ``chunk_files(mp)``, ``log(mp)``."""

    def __init__(self, factory) -> None:  # factory: tests/conftest.py MountFactory
        self.factory = factory
        self._tmpfs: list[Path] = []
        self._extra_env: dict[Path, dict[str, str]] = {}
        shared_env = factory._env

        def env(m) -> dict[str, str]:
            return {**shared_env(m), **self._extra_env.get(m.path, {})}

        factory._env = env

    # -- mounting ---------------------------------------------------------------------------------
    def mount(
        self,
        *,
        inline_max: int | None = None,
        chunk_size: int | None = None,
        blocks_tmpfs: str | None = None,
        block_dirs: int = 1,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        mkfs_args: tuple[str, ...] = (),
    ) -> Path:
        if self.factory.target != "fusefs":
            pytest.skip("file-data tests look at chunk files and kill the daemon: fusefs only")
        extra: list[str] = list(mkfs_args)
        if inline_max is not None:
            extra += ["--inline-max", str(inline_max)]
        if chunk_size is not None:
            extra += ["--chunk-size", str(chunk_size)]
        shared_mkfs = self.factory._mkfs

        def mkfs(m, args: list[str]) -> None:
            self._extra_env[m.path] = dict(env or {})
            more = [m.workdir / f"blocks{n}" for n in range(2, block_dirs + 1)]
            for blocks in more:
                blocks.mkdir()
                extra.extend(["--blocks", str(blocks)])
            if blocks_tmpfs is not None:
                for blocks in [m.workdir / "blocks", *more]:
                    subprocess.run(
                        [
                            "mount",
                            "-t",
                            "tmpfs",
                            "-o",
                            f"size={blocks_tmpfs},mode=0755",
                            "tmpfs",
                            str(blocks),
                        ],
                        check=True,
                        capture_output=True,
                    )
                    self._tmpfs.append(blocks)
            shared_mkfs(m, [*extra, *args])

        self.factory._mkfs = mkfs
        try:
            return self.factory(options=options)
        finally:
            del self.factory._mkfs  # back to the class's method

    @property
    def data_tier(self) -> bool:
        """Whether the filesystems have an object data tier (``FUSEFS_TEST_DATA_TIER=1``)."""
        return self.factory.data_tier is not None

    def _m(self, mp: Path):
        return self.factory.mounts[mp]

    def kill(self, mp: Path) -> None:
        """kill -9 the daemon, then clear the dead mount (fusermount3 -uz) as an admin would."""
        m = self._m(mp)
        assert m.proc is not None and m.proc.poll() is None, "daemon not running"
        os.killpg(m.proc.pid, signal.SIGKILL)
        m.proc.wait(timeout=10)
        m.proc = None
        subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True)
        deadline = time.monotonic() + 10
        while self.factory.entry(mp) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.factory.entry(mp) is None, f"{mp} still mounted after fusermount3 -uz"

    def start(self, mp: Path) -> Path:
        """Mount again (after ``kill`` or ``unmount``); recovery runs at mount."""
        m = self._m(mp)
        assert m.proc is None
        self.factory._start(m)
        return mp

    def remount(self, mp: Path) -> Path:
        return self.factory.remount(mp)

    def unmount(self, mp: Path) -> None:
        self.factory.unmount(mp)

    # -- looking inside ---------------------------------------------------------------------------
    def blocks_dir(self, mp: Path) -> Path:
        return self._m(mp).workdir / "blocks"

    def blocks_dirs(self, mp: Path) -> list[Path]:
        """Every block directory of the mount: ``blocks``, then ``blocks2``... (see ``block_dirs``)."""
        workdir = self._m(mp).workdir
        return [workdir / "blocks", *sorted(workdir.glob("blocks[0-9]*"), key=lambda p: int(p.name[6:]))]

    def store_path(self, mp: Path) -> Path:
        url = self._m(mp).store
        if not url.startswith("sqlite://"):
            pytest.skip("this check reads the embedded store's file")
        return Path(url.removeprefix("sqlite://"))

    def chunk_files(self, mp: Path) -> dict[int, Path]:
        """Chunk id → path of every chunk file in the block directories."""
        found = {}
        for path in (p for d in self.blocks_dirs(mp) for p in d.glob(f"*/*{CHUNK_SUFFIX}")):
            chunk_id = parse_chunk_name(path.name)
            if chunk_id is not None:
                found[chunk_id] = path
        return found

    def wait_for_recovery(self, mp: Path, timeout: float = 30.0) -> None:
        """Wait until the mount's recovery has rebuilt every chunk caught mid-write (no dirty mark is left
        in the store), read through a read-only handle on the store beside the daemon."""
        from metadata.keys import FsKeys
        from metadata.urls import open_store

        m = self._m(mp)
        keys = FsKeys(m.name)
        store = open_store(m.store, read_only=True, exclusive=False)
        try:
            assert wait_for(
                lambda: not store.transact(lambda tr: tr.get_range(*keys.dirty_chunks(), limit=1)), timeout
            ), f"chunks still marked dirty {timeout} s after mounting"
        finally:
            store.close()

    def log(self, mp: Path) -> str:
        return self.factory.daemon_log(mp)

    def expect_errors(self, regex: str) -> None:
        """See ``MountFactory.expect_errors``: ERROR records this test provokes on purpose."""
        self.factory.expect_errors(regex)

    def cli(self, mp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``python -m fusefs ARGS --store URL --name NAME`` for this mount's filesystem."""
        m = self._m(mp)
        cmd = [sys.executable, "-m", "fusefs", *args, "--store", m.store, "--name", m.name]
        res = subprocess.run(
            cmd, cwd=m.workdir, env=self.factory._env(m), capture_output=True, text=True, timeout=120
        )
        if check and (res.returncode != 0 or "Traceback" in res.stderr):
            pytest.fail(f"{' '.join(cmd)} failed (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def check_consistent(self, mp: Path) -> None:
        """Unmount, then ``fusefs fsck``: every entry, inode, count, chunk record and chunk file agrees
        with the rest of the filesystem (the walk of the whole tree that ends each fault test)."""
        if self._m(mp).proc is not None:
            self.unmount(mp)
        res = self.cli(mp, "fsck", check=False)
        assert res.returncode == 0 and res.stdout.rstrip().endswith("clean"), res.stdout + res.stderr

    def referenced_chunks(self, mp: Path) -> dict[int, tuple[int, bool]]:
        """Chunk id → (inode, inode is chunked) of every chunk record, read from the store's file (the
        filesystem must be unmounted).  Uses the metadata package to decode keys, like gc does."""
        from metadata.keys import FsKeys
        from metadata.model import ChunkRecord, InodeAttr

        m = self._m(mp)
        assert m.proc is None, "unmount first"
        keys = FsKeys(m.name)
        found: dict[int, tuple[int, bool]] = {}
        with contextlib.closing(sqlite3.connect(f"file:{self.store_path(mp)}?mode=ro", uri=True)) as db:
            begin, end = keys.whole_filesystem()
            attrs = {}
            for key, value in db.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ?", (begin, end)):
                kind = _kind(keys, key)
                if kind == "a":
                    ino = int.from_bytes(_part(keys, key, 1), "little")
                    attrs[ino] = InodeAttr.decode(ino, value)
            for key, value in db.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ?", (begin, end)):
                if _kind(keys, key) == "c":
                    ino = int.from_bytes(_part(keys, key, 1), "little")
                    record = ChunkRecord.decode(value)
                    attr = attrs.get(ino)
                    found[record.chunk_id] = (ino, bool(attr and attr.chunked))
        return found

    def close(self) -> None:
        self.factory.close()
        for path in self._tmpfs:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _kind(keys, key: bytes) -> str:
    import fdb.tuple

    return str(fdb.tuple.unpack(key[len(keys.prefix) :])[0])


def _part(keys, key: bytes, index: int):
    import fdb.tuple

    return fdb.tuple.unpack(key[len(keys.prefix) :])[index]


@pytest.fixture
def data_mounts(mount_fs) -> Iterator[DataMounts]:
    mounts = DataMounts(mount_fs)
    try:
        yield mounts
    finally:
        mounts.close()  # before mount_fs's own teardown: a tmpfs under a live mount would be busy


def drop_caches() -> None:
    """Make the kernel forget cached pages and unused inodes (so FUSE sends FORGET and re-reads)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
