"""Copy-on-write of chunks shared by clones (metadata/clone.py), in the open-file write path
(fusefs/openfile.py), driven through the adapter without a mount, without and with retry chaos: the
shared chunk files are never written, and each side reads its own bytes."""

from __future__ import annotations

import errno
import os

import pyfuse3
import pytest
import trio
from conftest import CHUNK, Harness
from test_adapter import CTX, chunk_files, create_file, pattern, read_all

from metadata import clone, filedata
from metadata.model import ROOT_CALLER, ROOT_INODE, ChunkRecord
from metadata.namespace import Namespace


def _clone(harness: Harness, src: int, name: bytes) -> int:
    ns = Namespace(harness.config)
    ino = harness.store.transact(lambda tr: ns.reserve_ids(tr, "inode", 1))
    harness.store.transact(lambda tr: clone.copy_inode(tr, ns, src, ino, ROOT_INODE, name, ROOT_CALLER))
    return ino


def _chunk_bytes(harness: Harness) -> dict[int, bytes]:
    return {
        chunk_id: open(harness.blocks.path(dir_index, chunk_id), "rb").read()
        for dir_index, chunk_id in harness.blocks.iter_chunk_ids()
    }


def test_writes_to_either_side_copy_the_chunk_they_touch(chaos: Harness) -> None:
    data = pattern(3 * CHUNK + 500)

    async def main() -> None:
        fs = await chaos.started()
        src = await create_file(fs, b"src", data)
        shared = _chunk_bytes(chaos)
        dst = _clone(chaos, src, b"dst")
        info = await fs.ops.open(dst, os.O_WRONLY, CTX)
        await fs.ops.write(info.fh, CHUNK + 10, b"changed")
        await fs.ops.release(info.fh)
        info = await fs.ops.open(src, os.O_WRONLY, CTX)
        await fs.ops.write(info.fh, 10, b"also")
        await fs.ops.release(info.fh)
        expected_dst = data[: CHUNK + 10] + b"changed" + data[CHUNK + 17 :]
        expected_src = data[:10] + b"also" + data[14:]
        assert await read_all(fs, dst, len(data)) == expected_dst
        assert await read_all(fs, src, len(data)) == expected_src
        now = _chunk_bytes(chaos)
        assert {i: now[i] for i in shared} == shared, "a shared chunk file was written"
        assert len(now) == len(shared) + 2  # one private copy per side
        await fs.ops.unlink(ROOT_INODE, b"src", CTX)
        await fs.ops.forget([(src, 1)])  # the kernel's lookup from the create
        await fs.lifecycle.reclaim_queued()
        assert await read_all(fs, dst, len(data)) == expected_dst
        records = chaos.run(filedata.read_chunks, chaos.keys, dst)
        assert chunk_files(chaos) == {record.chunk_id for record in records.values()}
        await fs.shutdown()

    trio.run(main)


def test_a_shared_chunk_replaced_under_a_writer_is_eio(chaos: Harness) -> None:
    """Another mount's writer put its own copy in place first: this writer's copy would overwrite it."""
    data = pattern(CHUNK + 100)

    async def main() -> None:
        fs = await chaos.started()
        src = await create_file(fs, b"src", data)
        dst = _clone(chaos, src, b"dst")
        info = await fs.ops.open(dst, os.O_WRONLY, CTX)
        await fs.ops.write(info.fh, CHUNK + 1, b"x")  # loads the records; chunk 1 copied
        (shared,) = [r for i, r in chaos.run(filedata.read_chunks, chaos.keys, dst).items() if i == 0]

        def replace(tr) -> None:  # as the other writer's unshare did
            filedata.unshare(tr, chaos.keys, dst, 0, shared.chunk_id, ChunkRecord(10**6, 0), b"other")

        chaos.raw(replace)
        with pytest.raises(pyfuse3.FUSEError) as caught:
            await fs.ops.write(info.fh, 0, b"y")
        assert caught.value.errno == errno.EIO
        await fs.ops.release(info.fh)
        await fs.shutdown()

    trio.run(main)
