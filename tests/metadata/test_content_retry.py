"""The data path is retry-safe after CommitUnknownResult.

The store applies a commit but reports ``CommitUnknownResult`` (FoundationDB error 1021), so the
transaction function runs again with ``maybe_committed``.  Every data-path transaction (the flush of
inline data or of chunks, a truncate, the move from inline data to chunks, the drop of stale chunk
records) must then leave the store as one application would: the file's size, the byte and inode
counters, chunk records and their owner keys, the chunk files, and one change-log record per flush.

Driven through ``OpenFile`` as the daemon drives it, on a real embedded store and real chunk files."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from conftest import Fs, commit_unknown_once

from blocks import Access, BlockStore, ChecksumTable
from fusefs.blockdirs import owner_of
from fusefs.idpool import IdPool
from fusefs.openfile import OpenFile
from fusefs.store_runner import StoreRunner
from metadata import filedata
from metadata.meta import Meta
from metadata.model import ROOT_INODE, ChunkRecord, pack
from metadata.sqlite_store import SqliteStore

INLINE_MAX = 8192
CHUNK = 16384


def pattern(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


class DataPath:
    """Files of one filesystem, opened as the daemon opens them, and the data each should hold."""

    def __init__(self, store: SqliteStore, tmp_path: Path) -> None:
        self.fs = Fs(store, inline_max_bytes=INLINE_MAX, chunk_size_bytes=CHUNK)
        (tmp_path / "blocks").mkdir()
        owner = owner_of(self.fs.config, store)
        self.blocks = BlockStore([str(tmp_path / "blocks")], CHUNK, owner, access=Access.CLAIM)
        self.writer = concurrent.futures.ThreadPoolExecutor(1)
        self.meta = Meta(self.fs.ns, StoreRunner(store).run)
        self.chunk_ids = IdPool(self.meta, "chunk")
        self.expected: dict[int, bytes] = {}

    def make(self, name: bytes) -> int:
        ino = self.fs.make(ROOT_INODE, name).ino
        self.expected[ino] = b""
        return ino

    def open(self, ino: int) -> OpenFile:
        return OpenFile(
            self.fs.attr(ino),
            self.meta,
            self.blocks,
            self.chunk_ids,
            self.fs.store.sync,
            self.writer,
            kernel_tracks_mtime=False,
        )

    async def write(self, ino: int, open_file: OpenFile, offset: int, data: bytes) -> None:
        await open_file.write(offset, data)
        old = self.expected[ino]
        self.expected[ino] = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data) :]

    async def retried(self, step: Callable[[], Awaitable[object]]) -> int:
        """Run ``step`` with its first commit reported as unknown; returns the log records it added."""
        before = len(self.fs.log())
        with commit_unknown_once(self.fs.store):
            await step()
        return len(self.fs.log()) - before

    async def check_applied_once(self) -> None:
        """The store and the block directory hold what one application of every step would leave."""
        fs, keys = self.fs, self.fs.keys
        sizes = {ino: fs.attr(ino).size for ino in self.expected}
        assert sizes == {ino: len(data) for ino, data in self.expected.items()}
        assert fs.statfs() == (1 + len(self.expected), sum(sizes.values())), "inode and byte counters"
        live = set()
        for ino, data in self.expected.items():
            attr = fs.attr(ino)
            chunks = fs.run(lambda tr, ino=ino: filedata.read_chunks(tr, keys, ino))
            if attr.chunked:
                assert max(chunks, default=-1) < -(-len(data) // CHUNK), "chunk records past the size"
                assert fs.raw_range(keys.inline_pieces(ino)) == [], "inline data left in a chunked file"
            else:
                assert chunks == {}
                size = len(data)
                assert (
                    fs.run(lambda tr, ino=ino, size=size: filedata.read_inline(tr, keys, ino, size)) == data
                )
            for record in chunks.values():
                assert not record.dirty
                assert fs.raw_get(keys.chunk_owner(record.chunk_id)) == pack(ino)
                live.add((record.dir_index, record.chunk_id))
            assert await self.open(ino).read(0, len(data) + 1) == data
        # Owner keys differ only in their last byte (chunk ids < 256 here): none but the live ones.
        owner_prefix = keys.chunk_owner(0)[:-1]
        owners = [key for key, _ in fs.dump() if key.startswith(owner_prefix)]
        assert len(owners) == len(live), "owner keys of dropped chunks left behind"
        assert fs.raw_range(keys.dirty_chunks()) == []
        assert set(self.blocks.iter_chunk_ids()) == live, "chunk files no record owns, or records without"


async def case_inline_flush(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, b"hello")
    assert await d.retried(f.flush) == 1


async def case_inline_rewrite(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, pattern(5000))
    await f.flush()
    await d.write(ino, f, 6000, b"tail")
    assert await d.retried(f.flush) == 1


async def case_chunked_flush(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, pattern(2 * CHUNK + 100))
    assert await d.retried(f.flush) == 1


async def case_chunked_growth(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, pattern(CHUNK + 100))
    await f.flush()
    await d.write(ino, f, 3 * CHUNK, b"far")
    assert await d.retried(f.flush) == 1


async def case_inline_to_chunks(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, b"small")
    await f.flush()
    await d.write(ino, f, 0, pattern(CHUNK + 5))
    assert await d.retried(f.flush) == 1


async def case_truncate_chunked(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, pattern(3 * CHUNK))
    await f.flush()
    await f.truncate(CHUNK + 10)
    d.expected[ino] = d.expected[ino][: CHUNK + 10]
    assert await d.retried(f.flush) == 1  # deletes the files of the chunks cut off, once committed


async def case_truncate_inline(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, pattern(5000))
    await f.flush()
    await f.truncate(100)
    d.expected[ino] = d.expected[ino][:100]
    assert await d.retried(f.flush) == 1


async def case_stale_chunks_dropped(d: DataPath) -> None:
    ino = d.make(b"f")
    f = d.open(ino)
    await d.write(ino, f, 0, pattern(CHUNK + 10))
    await f.flush()
    # A daemon killed while writing past the recorded size left records of chunks 2 and 3 (clean once
    # recovery rebuilt their checksums), with their files.
    for index in (2, 3):
        record = ChunkRecord(await d.chunk_ids.take(), 0)
        table = ChecksumTable(CHUNK)
        d.blocks.write(record.dir_index, record.chunk_id, 0, b"lost", table)
        record.checksums = table.to_bytes()
        d.fs.run(lambda tr, index=index, record=record: filedata.put_chunk(tr, d.fs.keys, ino, index, record))
    reopened = d.open(ino)
    assert await d.retried(lambda: reopened.read(0, 1)) == 0


CASES = [
    case_inline_flush,
    case_inline_rewrite,
    case_chunked_flush,
    case_chunked_growth,
    case_inline_to_chunks,
    case_truncate_chunked,
    case_truncate_inline,
    case_stale_chunks_dropped,
]


@pytest.mark.parametrize(
    "case", [pytest.param(case, id=case.__name__.removeprefix("case_")) for case in CASES]
)
def test_data_path_is_retry_safe_after_commit_unknown_result(store, tmp_path, case):
    d = DataPath(store, tmp_path)

    async def run() -> None:
        await case(d)
        await d.check_applied_once()

    try:
        trio.run(run)
    finally:
        d.writer.shutdown(wait=True)


def test_moving_to_chunks_with_nothing_stale_commits_no_operation_record(store, tmp_path):
    """The check for stale chunks before the move is read-only: on a store whose commits may end
    unknown (FoundationDB), only the writes of the move itself commit, and none records an operation."""
    d = DataPath(store, tmp_path)

    async def run() -> None:
        ino = d.make(b"f")
        f = d.open(ino)
        await d.write(ino, f, 0, b"small")
        await f.flush()
        await d.chunk_ids.take()  # the pool's reservation (an operation, recorded) is made beforehand
        with commit_unknown_once(store):  # every commit in here could end unknown
            await d.write(ino, f, 0, pattern(CHUNK + 5))
        assert d.fs.raw_range(d.fs.keys.operations_before(2**62)) == []
        await f.flush()
        await d.check_applied_once()

    try:
        trio.run(run)
    finally:
        d.writer.shutdown(wait=True)
