"""The adapter's handlers driven as the kernel drives them, without a mount (fusefs/operations.py with
the handle table, the open-file table and the inode life cycle), over a real embedded store and chunk
files, each test without and with retry chaos: every transaction may run twice, and what the kernel
sees and what the store holds must be as if each ran once."""

from __future__ import annotations

import errno
import os

import pyfuse3
import pytest
import trio
from conftest import CHUNK, INLINE_MAX, Harness

from fusefs.filesystem import Filesystem
from fusefs.handles import DirHandle
from metadata import filedata
from metadata.model import ROOT_INODE

CTX = pyfuse3.RequestContext()  # uid 0, gid 0: root, whose groups need no lookup


def pattern(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


def fuse_errno(call) -> int:
    """The errno a handler answered with (``FUSEError``, as the kernel gets it)."""

    async def run() -> int:
        with pytest.raises(pyfuse3.FUSEError) as caught:
            await call()
        return caught.value.errno

    return trio.run(run)


async def create_file(fs: Filesystem, name: bytes, data: bytes, pieces: int = 3) -> int:
    """create, ``pieces`` writes, release: as ``cp`` does it."""
    info, entry = await fs.ops.create(ROOT_INODE, name, 0o644, os.O_WRONLY, CTX)
    step = -(-len(data) // pieces)
    for offset in range(0, len(data), step):
        assert await fs.ops.write(info.fh, offset, data[offset : offset + step]) == len(
            data[offset : offset + step]
        )
    await fs.ops.release(info.fh)
    return entry.st_ino


async def read_all(fs: Filesystem, ino: int, size: int) -> bytes:
    info = await fs.ops.open(ino, os.O_RDONLY, CTX)
    try:
        return await fs.ops.read(info.fh, 0, size + 1)
    finally:
        await fs.ops.release(info.fh)


def chunk_files(harness: Harness) -> set[int]:
    return {chunk_id for _, chunk_id in harness.blocks.iter_chunk_ids()}


def test_create_write_close_rename_read(chaos: Harness) -> None:
    """The newcomer's walk: create, write + close, rename, and read back through a new open."""
    small, large = pattern(INLINE_MAX // 2), pattern(3 * CHUNK + 123, seed=1)

    async def main() -> None:
        fs = await chaos.started()
        inline_ino = await create_file(fs, b"small", small)
        chunked_ino = await create_file(fs, b"large", large)
        await fs.ops.rename(ROOT_INODE, b"large", ROOT_INODE, b"moved", 0, CTX)
        entry = await fs.ops.lookup(ROOT_INODE, b"moved", CTX)
        assert entry.st_ino == chunked_ino and entry.st_size == len(large)
        assert (await fs.ops.getattr(inline_ino)).st_size == len(small)
        assert await read_all(fs, inline_ino, len(small)) == small
        assert await read_all(fs, chunked_ino, len(large)) == large
        assert await fs.meta.statfs() == (3, len(small) + len(large)), "a retried flush counted twice"
        records = chaos.run(filedata.read_chunks, chaos.keys, chunked_ino)
        assert sorted(records) == [0, 1, 2, 3]
        assert chunk_files(chaos) == {record.chunk_id for record in records.values()}
        await fs.shutdown()

    trio.run(main)


def test_an_unlinked_open_file_lives_until_released_and_forgotten(chaos: Harness) -> None:
    data = pattern(2 * CHUNK)

    async def main() -> None:
        fs = await chaos.started()
        ino = await create_file(fs, b"f", data)
        await fs.ops.lookup(ROOT_INODE, b"f", CTX)  # the kernel now holds two lookups (create, lookup)
        info = await fs.ops.open(ino, os.O_RDONLY, CTX)
        await fs.ops.unlink(ROOT_INODE, b"f", CTX)
        assert await fs.ops.read(info.fh, 0, len(data)) == data, "an open file lost its data at unlink"
        await fs.ops.forget([(ino, 2)])
        assert await fs.meta.orphans() == [ino]
        await fs.ops.release(info.fh)
        await fs.lifecycle.reclaim_queued()
        assert await fs.meta.orphans() == []
        assert await fs.meta.statfs() == (1, 0)
        assert chunk_files(chaos) == set(), "chunk files of the reclaimed inode were left"
        await fs.shutdown()

    trio.run(main)


def test_a_looked_up_orphan_waits_for_the_kernel_to_forget_it(chaos: Harness) -> None:
    async def main() -> None:
        fs = await chaos.started()
        ino = await create_file(fs, b"f", b"x")
        await fs.ops.unlink(ROOT_INODE, b"f", CTX)
        assert await fs.meta.orphans() == [ino], "reclaimed while the kernel still held it"
        await fs.ops.forget([(ino, 1)])
        await fs.lifecycle.reclaim_queued()
        assert await fs.meta.orphans() == []
        await fs.shutdown()

    trio.run(main)


def test_unknown_and_mismatched_handles_are_ebadf(chaos: Harness) -> None:
    fs = chaos.mount()
    assert fuse_errno(lambda: fs.ops.read(99, 0, 1)) == errno.EBADF
    assert fuse_errno(lambda: fs.ops.write(99, 0, b"x")) == errno.EBADF
    assert fuse_errno(lambda: fs.ops.release(99)) == errno.EBADF
    dir_fh = trio.run(fs.ops.opendir, ROOT_INODE, CTX)
    assert fuse_errno(lambda: fs.ops.read(dir_fh, 0, 1)) == errno.EBADF, "a directory handle read as a file"
    trio.run(fs.ops.releasedir, dir_fh)
    assert fuse_errno(lambda: fs.ops.readdir(dir_fh, 0, None)) == errno.EBADF, "a released handle still works"


def test_opendir_of_a_file_is_enotdir(chaos: Harness) -> None:
    fs = trio.run(chaos.started)
    ino = trio.run(create_file, fs, b"f", b"x")
    assert fuse_errno(lambda: fs.ops.opendir(ino, CTX)) == errno.ENOTDIR


def test_a_read_only_adapter_refuses_changes(chaos: Harness) -> None:
    fs = chaos.mount(read_only=True)
    assert fuse_errno(lambda: fs.ops.create(ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)) == errno.EROFS
    assert fuse_errno(lambda: fs.ops.mkdir(ROOT_INODE, b"d", 0o755, CTX)) == errno.EROFS
    assert fuse_errno(lambda: fs.ops.open(ROOT_INODE, os.O_RDWR, CTX)) == errno.EROFS
    assert trio.run(fs.meta.statfs) == (1, 0)


def test_a_readdir_cursor_resumes_after_a_rewind() -> None:
    handle = DirHandle(ino=5, parent=1, names=[b".", b"..", b"a", b"b"], read_up_to=b"b", read_to_end=True)
    handle.seek(4)  # where it stopped: nothing changes
    assert handle.names == [b".", b"..", b"a", b"b"] and handle.read_to_end
    handle.seek(3)  # back to after "a": read on from there
    assert handle.names == [b".", b"..", b"a"] and handle.read_up_to == b"a" and not handle.read_to_end
    handle.seek(0)  # a rewind: from the start
    assert handle.names == [] and handle.read_up_to is None and not handle.ahead
