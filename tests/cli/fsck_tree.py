"""A small filesystem built through the store API (no FUSE), for the fsck and dump tests: a directory
tree, a hard link, a symlink, an xattr, an inline file and a chunked file with real chunk files."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from blocks import ChecksumTable
from fusefs.blockdirs import open_block_store
from metadata import content
from metadata.model import ROOT_CALLER, ROOT_INODE, ChunkRecord
from metadata.namespace import Namespace, load_config
from metadata.sqlite_store import SqliteStore

CHUNK = 65536
BIG = bytes(range(256)) * 600  # 153600 bytes: three chunks of 64 KiB, the last one partial
SMALL = b"hello, fsck\n"


@dataclass
class Tree:
    dir: int
    sub: int
    small: int
    big: int
    link: int
    chunk_ids: list[int]


def build(db: str, name: str) -> Tree:
    store = SqliteStore(db)
    try:
        config = load_config(store, name)
        ns = Namespace(config)
        first = store.transact(lambda tr: ns.reserve_ids(tr, "inode", 5))
        d, sub, small, big, link = range(first, first + 5)

        def make(parent: int, name: bytes, ino: int, mode: int, target: bytes = b"") -> None:
            store.transact(lambda tr: ns.create(tr, parent, name, ino, mode, ROOT_CALLER, target=target))

        make(ROOT_INODE, b"dir", d, stat.S_IFDIR | 0o755)
        make(d, b"sub", sub, stat.S_IFDIR | 0o755)
        make(d, b"small", small, stat.S_IFREG | 0o644)
        make(ROOT_INODE, b"big", big, stat.S_IFREG | 0o600)
        make(ROOT_INODE, b"link", link, stat.S_IFLNK | 0o777, target=b"dir/small")
        store.transact(lambda tr: ns.link(tr, small, sub, b"small-again", ROOT_CALLER))
        store.transact(lambda tr: ns.setxattr(tr, small, b"user.colour", b"blue", ROOT_CALLER))
        _flush(store, ns, small, SMALL, {})
        config, blocks = open_block_store(store, name, writable=True)
        try:
            count = -(-len(BIG) // CHUNK)
            first_chunk = store.transact(lambda tr: ns.reserve_ids(tr, "chunk", count))
            records = {}
            for index in range(count):
                table = ChecksumTable(CHUNK)
                piece = BIG[index * CHUNK : (index + 1) * CHUNK]
                blocks.write(0, first_chunk + index, 0, piece, table)
                records[index] = ChunkRecord(first_chunk + index, 0, table.to_bytes())
        finally:
            blocks.close()
        _flush(store, ns, big, None, records, size=len(BIG))
        return Tree(d, sub, small, big, link, [first_chunk + i for i in range(count)])
    finally:
        store.close()


def _flush(store, ns, ino, inline, chunks, size=None) -> None:
    change = content.Flush(
        ino=ino,
        size=len(inline) if size is None else size,
        atime_ns=1,
        mtime_ns=1,
        inline=inline,
        chunks=chunks,
        allocated=0 if inline is not None else size,
        stored_size=0,
        stored_chunked=False,
        caller=ROOT_CALLER,
    )
    store.transact(lambda tr: content.flush(tr, ns, change))
