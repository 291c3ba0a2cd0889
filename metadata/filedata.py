"""File contents records: inline data of small files and the chunk map of large ones.

Inline data is split into pieces of ``INLINE_PIECE_BYTES`` so every value stays well under
FoundationDB's 100 kB limit (and near its recommended 10 kB); a whole small file is one range read.
A large file has one ``ChunkRecord`` per chunk index, plus a reverse key chunk id → inode that
garbage collection uses to tell a live chunk file from a leftover.

A chunk may be shared by the records of several inodes (clones, metadata/clone.py): a references key
then counts them, and the owner key stays until the last record referring to the chunk is dropped, so
garbage collection and the deleters keep the file for the other copies.  A shared chunk file is never
written: an open file writes a copy instead (``unshare``, fusefs/openfile.py).
"""

from __future__ import annotations

import errno

from metadata.keys import FsKeys
from metadata.model import ChunkRecord, FSError, pack, unpack
from metadata.store import Transaction, decode_int64, encode_int64

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
    tr.clear_range(begin, end)
    return [record for record in dropped if release(tr, keys, record.chunk_id)]


def references(tr: Transaction, keys: FsKeys, chunk_id: int) -> int:
    """How many chunk records refer to ``chunk_id`` (1 when no references key says more)."""
    raw = tr.get(keys.chunk_refs(chunk_id))
    return 1 if raw is None else decode_int64(raw)


def share(tr: Transaction, keys: FsKeys, ino: int, index: int, record: ChunkRecord) -> None:
    """Record ``ino``'s chunk ``index`` as one more reference to ``record``'s (clean) chunk."""
    # The version too: a chunk of a data tier stays its object (a shared chunk is never written again).
    shared = ChunkRecord(record.chunk_id, record.dir_index, record.checksums, version=record.version)
    tr.set(keys.chunk(ino, index), shared.encode())
    tr.set(keys.chunk_refs(record.chunk_id), encode_int64(references(tr, keys, record.chunk_id) + 1))


def release(tr: Transaction, keys: FsKeys, chunk_id: int) -> bool:
    """Drop one reference to ``chunk_id`` (its record is the caller's to clear); True when it was the
    last, so the chunk's file is the caller's to delete after commit."""
    count = references(tr, keys, chunk_id)
    if count > 2:
        tr.set(keys.chunk_refs(chunk_id), encode_int64(count - 1))
    elif count == 2:
        tr.clear(keys.chunk_refs(chunk_id))
    else:
        tr.clear(keys.chunk_owner(chunk_id))
    return count <= 1


def is_shared(tr: Transaction, keys: FsKeys, chunk_id: int) -> bool:
    return references(tr, keys, chunk_id) > 1


def unshare(
    tr: Transaction, keys: FsKeys, ino: int, index: int, shared_id: int, record: ChunkRecord, session: bytes
) -> bool:
    """Replace ``ino``'s record at ``index``, which refers to the chunk ``shared_id``, by ``record`` (a
    new chunk holding a copy, marked dirty); False, changing nothing, if the record there is no longer
    ``shared_id``'s.  The chunk is released: a shared one keeps its other references; an unshared
    one is another host's chunk of the data tier (fusefs/openfile.py ``_copy_chunk``), whose file and
    objects garbage collection then finds unreferenced."""
    raw = tr.get(keys.chunk(ino, index))
    if raw is None or ChunkRecord.decode(raw).chunk_id != shared_id:
        return False
    release(tr, keys, shared_id)
    _mark(tr, keys, ino, index, record, session)
    return True


def live_versions(tr: Transaction, fs_name: str, chunk_ids: list[int]) -> set[tuple[int, int]]:
    """(chunk id, object version) of every chunk record of ``fs_name`` among `chunk_ids` that points at
    an object: the objects of the data tier that must be kept.  (chunk id, 0) means every version:
    the chunk is live but its owner key names an inode no longer referring to it, as when a clone
    shares it (the owner key names one referrer, and stays while any remains), so which records refer
    to it is unknown here."""
    keys = FsKeys(fs_name)
    owners: dict[int, set[int]] = {}
    for chunk_id in set(chunk_ids):
        owner = tr.get(keys.chunk_owner(chunk_id), snapshot=True)
        if owner is not None:
            owners.setdefault(unpack_ino(owner), set()).add(chunk_id)
    live: set[tuple[int, int]] = set()
    for ino, owned in owners.items():
        records = [r for r in read_chunks(tr, keys, ino).values() if r.chunk_id in owned]
        live.update((r.chunk_id, r.version) for r in records if r.version)
        live.update((chunk_id, 0) for chunk_id in owned - {r.chunk_id for r in records})
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
    *,
    existing: bool = False,
) -> bool:
    """Mark a chunk as being written; False, marking nothing, if it is shared: the writer must write a
    copy (``unshare``).  ``existing``: the writer took ``record`` from the store, which must still hold
    it (EIO if not: another mount's writer replaced or dropped it, and the chunk may now be only a
    clone's)."""
    if existing:
        raw = tr.get(keys.chunk(ino, index))
        if raw is None or ChunkRecord.decode(raw).chunk_id != record.chunk_id:
            raise FSError(errno.EIO, f"inode {ino}: chunk {index} was replaced by another writer")
    if is_shared(tr, keys, record.chunk_id):
        return False
    _mark(tr, keys, ino, index, record, session)
    return True


def _mark(tr: Transaction, keys: FsKeys, ino: int, index: int, record: ChunkRecord, session: bytes) -> None:
    record.dirty = True
    put_chunk(tr, keys, ino, index, record)
    tr.set(keys.dirty_chunk(ino, index), session)


def mark_clean(tr: Transaction, keys: FsKeys, ino: int, index: int, record: ChunkRecord) -> None:
    record.dirty = False
    put_chunk(tr, keys, ino, index, record)
    tr.clear(keys.dirty_chunk(ino, index))


def unpack_ino(raw: bytes) -> int:
    return int(unpack(raw, "chunk owner"))
