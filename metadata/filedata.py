"""File contents records: inline data of small files and the chunk map of large ones.

Inline data is split into pieces of ``INLINE_PIECE_BYTES`` so every value stays well under
FoundationDB's 100 kB limit (and near its recommended 10 kB); a whole small file is one range read.
A large file has one ``ChunkRecord`` per chunk index, plus a reverse key chunk id → inode that
garbage collection uses to tell a live chunk file from a leftover.
"""

from __future__ import annotations

from metadata.keys import FsKeys
from metadata.model import ChunkRecord, pack, unpack
from metadata.store import Transaction

INLINE_PIECE_BYTES = 8192


def read_inline(tr: Transaction, keys: FsKeys, ino: int, size: int) -> bytes:
    begin, end = keys.inline_pieces(ino)
    data = b"".join(value for _, value in tr.iter_range(begin, end, snapshot=True))
    return data[:size].ljust(size, b"\0")


def write_inline(tr: Transaction, keys: FsKeys, ino: int, data: bytes) -> None:
    clear_inline(tr, keys, ino)
    for index, start in enumerate(range(0, len(data), INLINE_PIECE_BYTES)):
        tr.set(keys.inline_piece(ino, index), data[start : start + INLINE_PIECE_BYTES])


def clear_inline(tr: Transaction, keys: FsKeys, ino: int) -> None:
    tr.clear_range(*keys.inline_pieces(ino))


def read_chunks(tr: Transaction, keys: FsKeys, ino: int) -> dict[int, ChunkRecord]:
    begin, end = keys.chunks(ino)
    return {
        keys.chunk_index(key): ChunkRecord.decode(value)
        for key, value in tr.iter_range(begin, end, snapshot=True)
    }


def put_chunk(tr: Transaction, keys: FsKeys, ino: int, index: int, record: ChunkRecord) -> None:
    tr.set(keys.chunk(ino, index), record.encode())
    tr.set(keys.chunk_owner(record.chunk_id), pack(ino))


def drop_chunks_from(tr: Transaction, keys: FsKeys, ino: int, first_index: int) -> list[ChunkRecord]:
    """Remove the chunk records of ``ino`` from ``first_index`` on; returns them (their files are the
    caller's to delete after commit; if it crashes first, garbage collection finds them)."""
    begin, end = keys.chunks_from(ino, first_index)
    dropped = [ChunkRecord.decode(value) for _, value in tr.iter_range(begin, end)]
    for record in dropped:
        tr.clear(keys.chunk_owner(record.chunk_id))
    tr.clear_range(begin, end)
    return dropped


def live_versions(tr: Transaction, fs_name: str, chunk_ids: list[int]) -> set[tuple[int, int]]:
    """(chunk id, object version) of every chunk record of ``fs_name`` among `chunk_ids` that points at
    an object: the objects of the data tier that must be kept."""
    keys = FsKeys(fs_name)
    live: set[tuple[int, int]] = set()
    inodes = set()
    for chunk_id in set(chunk_ids):
        owner = tr.get(keys.chunk_owner(chunk_id), snapshot=True)
        if owner is not None:
            inodes.add(unpack_ino(owner))
    for ino in inodes:
        live.update((r.chunk_id, r.version) for r in read_chunks(tr, keys, ino).values() if r.version)
    return live


def chunk_is_live(tr: Transaction, keys: FsKeys, chunk_id: int) -> bool:
    return tr.get(keys.chunk_owner(chunk_id), snapshot=True) is not None


def dead_chunks(tr: Transaction, fs_name: str, places: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Of ``places`` (directory index, chunk id), those whose chunk no record of ``fs_name`` owns."""
    keys = FsKeys(fs_name)
    return [(dir_index, chunk_id) for dir_index, chunk_id in places if not chunk_is_live(tr, keys, chunk_id)]


def dirty_marks(tr: Transaction, keys: FsKeys) -> list[tuple[int, int, bytes]]:
    """(inode, chunk index, writer's session) of every chunk marked dirty (being written, or its writer
    died); the session is ``b""`` for marks made before sessions existed."""
    begin, end = keys.dirty_chunks()
    return [(*keys.dirty_chunk_of(key), session) for key, session in tr.iter_range(begin, end, snapshot=True)]


def mark_dirty(
    tr: Transaction,
    keys: FsKeys,
    ino: int,
    index: int,
    record: ChunkRecord,
    session: bytes = b"",
    replaced: int | None = None,
) -> None:
    """`replaced`: the chunk id this record takes the place of (a chunk of the object data tier that
    another host wrote, copied into a new local chunk): it no longer belongs to the inode."""
    record.dirty = True
    if replaced is not None:
        tr.clear(keys.chunk_owner(replaced))
    put_chunk(tr, keys, ino, index, record)
    tr.set(keys.dirty_chunk(ino, index), session)


def mark_clean(tr: Transaction, keys: FsKeys, ino: int, index: int, record: ChunkRecord) -> None:
    record.dirty = False
    put_chunk(tr, keys, ino, index, record)
    tr.clear(keys.dirty_chunk(ino, index))


def unpack_ino(raw: bytes) -> int:
    return int(unpack(raw, "chunk owner"))
