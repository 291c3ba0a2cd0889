"""Store round trips per kernel request, counted on the embedded store's latency emulation in shared mode
(each read round stands for a FoundationDB network round trip), for the requests ``tar -x`` sends per
file: create, write, utimensat, chown, chmod, close.  What an answer needs and this mount already knows
costs no round; what must be read or committed is read or committed."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyfuse3
import pytest
import trio
from conftest import Harness

from metadata.emulation import StoreEmulation
from metadata.model import ROOT_INODE
from metadata.sqlite_store import SqliteStore

CTX = pyfuse3.RequestContext()  # uid 0, gid 0
WHEN_NS = 1_600_000_000_123_456_789


@dataclass
class Fields:
    """Which attributes a setattr request sets (the kernel's ``pyfuse3.SetattrFields``)."""

    update_atime: bool = False
    update_mtime: bool = False
    update_ctime: bool = False
    update_mode: bool = False
    update_uid: bool = False
    update_gid: bool = False
    update_size: bool = False


@pytest.fixture
def emulated(tmp_path: Path) -> Iterator[Harness]:
    store = SqliteStore(
        str(tmp_path / "meta.db"),
        shared=True,
        emulation=StoreEmulation(read_delay_s=0.00001, commit_delay_s=0.00001),
    )
    harness = Harness(store, tmp_path)
    yield harness
    harness.close()


def _attributes(**values: int) -> pyfuse3.EntryAttributes:
    attr = pyfuse3.EntryAttributes()
    for name, value in values.items():
        setattr(attr, name, value)
    return attr


def test_tar_x_of_a_small_file_reads_once_per_transaction(emulated: Harness) -> None:
    store = emulated.store

    async def counted(request: Awaitable[Any]) -> tuple[Any, tuple[int, int]]:
        reads, commits = store.emulated_read_rounds, store.emulated_commits
        answer = await request
        return answer, (store.emulated_read_rounds - reads, store.emulated_commits - commits)

    async def main() -> None:
        fs = await emulated.started(strict=False)
        await fs.ops.mkdir(ROOT_INODE, b"d", 0o755, CTX)  # reserves inode numbers too
        directory = await fs.ops.lookup(ROOT_INODE, b"d", CTX)
        (info, entry), rounds = await counted(fs.ops.create(directory.st_ino, b"f", 0o600, os.O_WRONLY, CTX))
        assert rounds == (1, 1)
        ino = entry.st_ino
        assert await counted(fs.ops.write(info.fh, 0, b"hello")) == (5, (0, 0))
        times = _attributes(st_atime_ns=WHEN_NS, st_mtime_ns=WHEN_NS)
        answer, rounds = await counted(
            fs.ops.setattr(ino, times, Fields(update_atime=True, update_mtime=True), None, CTX)
        )
        # Folded into the flush (the file has unflushed data), and answered from what this mount knows.
        assert rounds == (0, 0)
        assert (answer.st_mtime_ns, answer.st_size, answer.st_mode & 0o7777) == (WHEN_NS, 5, 0o600)
        owner = _attributes(st_uid=1000, st_gid=1000)
        answer, rounds = await counted(
            fs.ops.setattr(ino, owner, Fields(update_uid=True, update_gid=True), None, CTX)
        )
        assert rounds == (1, 1)
        mode = _attributes(st_mode=0o100640)
        answer, rounds = await counted(fs.ops.setattr(ino, mode, Fields(update_mode=True), None, CTX))
        assert rounds == (1, 1)  # the access ACL, which a mode change rewrites, is read in the same round
        assert (answer.st_mode & 0o7777, answer.st_uid, answer.st_mtime_ns) == (0o640, 1000, WHEN_NS)
        assert (await counted(fs.ops.flush(info.fh)))[1] == (1, 1)
        await fs.ops.release(info.fh)
        fs.cache.clear()  # as another mount would find it: from the store
        stored = await fs.ops.getattr(ino, CTX)
        assert (stored.st_mode & 0o7777, stored.st_uid, stored.st_mtime_ns, stored.st_size) == (
            0o640,
            1000,
            WHEN_NS,
            5,
        )

    trio.run(main)


def test_with_strict_a_setattr_of_times_answers_from_the_store(emulated: Harness) -> None:
    store = emulated.store

    async def main() -> None:
        fs = await emulated.started(strict=True)
        info, entry = await fs.ops.create(ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
        await fs.ops.write(info.fh, 0, b"data")
        reads = store.emulated_read_rounds
        times = _attributes(st_atime_ns=WHEN_NS, st_mtime_ns=WHEN_NS)
        answer = await fs.ops.setattr(
            entry.st_ino, times, Fields(update_atime=True, update_mtime=True), None, CTX
        )
        assert store.emulated_read_rounds == reads + 1  # nothing is answered from memory
        assert (answer.st_mtime_ns, answer.st_size) == (WHEN_NS, 4)
        await fs.ops.release(info.fh)

    trio.run(main)
