"""Transactions that recover what a dead mount left behind (metadata/sessions.py decides which mount
is dead): its dirty chunks get the checksums of the bytes on disk, and chunk records its interrupted
writes left beyond a file's recorded size are dropped.  Its orphans are reclaimed with
``Namespace.reclaim(..., session=dead)``.

Each transaction re-checks that what it repairs still belongs to the dead session: a live mount may
have started writing the same chunk since (its mark then names it), and then the chunk is its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from metadata import changelog, filedata
from metadata.keys import FsKeys
from metadata.model import ChunkRecord, InodeAttr
from metadata.namespace import orphan_session
from metadata.store import Transaction


@dataclass
class Leftovers:
    """What one session left: chunks marked dirty (inode → chunk indexes) and orphan inodes."""

    dirty: dict[int, list[int]] = field(default_factory=dict)
    orphans: list[int] = field(default_factory=list)


def leftovers(tr: Transaction, keys: FsKeys) -> dict[bytes, Leftovers]:
    """Every session's dirty marks and orphans (``b""``: records made before sessions existed)."""
    found: defaultdict[bytes, Leftovers] = defaultdict(Leftovers)
    for ino, index, session in filedata.dirty_marks(tr, keys):
        found[session].dirty.setdefault(ino, []).append(index)
    begin, end = keys.orphans()
    for key, raw in tr.iter_range(begin, end, snapshot=True):
        found[orphan_session(raw)].orphans.append(keys.orphan_ino(key))
    return dict(found)


def dirty_chunk(tr: Transaction, keys: FsKeys, ino: int, index: int, session: bytes) -> ChunkRecord | None:
    """The record of a chunk still marked dirty by ``session``; None if the mark is gone or names
    another session now.  A mark whose chunk record is gone (the file was truncated or deleted
    meanwhile, which drops records but leaves marks) is cleared."""
    if tr.get(keys.dirty_chunk(ino, index)) != session:
        return None
    raw = tr.get(keys.chunk(ino, index))
    if raw is None:
        tr.clear(keys.dirty_chunk(ino, index))
        return None
    return ChunkRecord.decode(raw)


def rebuild_chunk(
    tr: Transaction,
    keys: FsKeys,
    ino: int,
    index: int,
    session: bytes,
    chunk_id: int,
    checksums: bytes,
    claimant: bytes,
    version: int | None = None,
) -> bool:
    """Store ``checksums`` (computed from chunk ``chunk_id``'s file) and clear the dirty mark, if the
    mark still names dead ``session`` and the record still points to that chunk; True if done.
    ``version``: with an object data tier, the object now holding the chunk (fusefs/recovery.py)."""
    if tr.get(keys.dirty_chunk(ino, index)) != session:
        return False
    raw = tr.get(keys.chunk(ino, index))
    record = ChunkRecord.decode(raw) if raw is not None else None
    if record is None or record.chunk_id != chunk_id:
        tr.clear(keys.dirty_chunk(ino, index))  # the chunk was dropped or replaced: the mark is stale
        return False
    record.checksums = checksums
    if version is not None:
        record.version = version
    filedata.mark_clean(tr, keys, ino, index, record)
    # Other mounts drop what they cached of the file (fusefs/invalidation.py).
    changelog.append(tr, keys, "recover", 0, ino, session=claimant)
    return True


def drop_chunks_beyond_size(
    tr: Transaction, keys: FsKeys, ino: int, chunk_size: int, claimant: bytes
) -> list[ChunkRecord]:
    """Drop the chunk records of ``ino`` that its recorded size does not cover (an interrupted write
    left them; all of them if the file is stored inline); returns them, for their files to be deleted.

    Nothing is dropped while any chunk of the file is marked dirty: a live writer marks every chunk
    before it writes to it, so its chunks beyond the size are all marked."""
    raw = tr.get(keys.attr(ino))
    if raw is None or tr.get_range(*keys.dirty_chunks_of(ino), limit=1):
        return []
    attr = InodeAttr.decode(ino, raw)
    covered = -(-attr.size // chunk_size) if attr.chunked else 0
    if not tr.get_range(*keys.chunks_from(ino, covered), limit=1):
        return []
    dropped = filedata.drop_chunks_from(tr, keys, ino, covered)
    changelog.append(tr, keys, "recover", 0, ino, session=claimant)
    return dropped
