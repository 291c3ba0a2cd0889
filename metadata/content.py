"""The data path's transactions: the flush of an open file's data, and the drop of stale chunk records.

An open file (fusefs/openfile.py) keeps its data in memory (inline files) or in chunk files and calls
these with everything they record as explicit arguments, so each is a pure function of its arguments and
of what it reads.  Both are wrapped whole in ``idempotent``: a flush adds to the byte counter and logs a
change, and the drop returns the chunks whose files the caller deletes; a retry after
``CommitUnknownResult`` must do neither twice nor lose the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from metadata import filedata, provenance
from metadata.idempotency import idempotent
from metadata.model import Caller, ChunkRecord, now_ns
from metadata.namespace import Namespace
from metadata.provenance import Access
from metadata.store import Transaction


@dataclass(slots=True)
class Flush:
    """One flush of an open file: what to record, and what the store held after the previous flush."""

    ino: int
    size: int
    atime_ns: int
    mtime_ns: int
    #: The whole data of an inline file; None once the file is chunked.
    inline: bytes | None
    #: A chunked file's records written since the previous flush (chunk index → record with its new
    #: checksum table), to be recorded clean.
    chunks: Mapping[int, ChunkRecord]
    #: A chunked file's bytes that hold data, for st_blocks.
    allocated: int
    #: Size and storage kind as the store held them: the byte counter moves by the difference, and a file
    #: that just became chunked still has inline data to clear.
    stored_size: int
    stored_chunked: bool
    caller: Caller
    #: The provenance record of the handle being flushed, written in this transaction (None: off).
    access: Access | None = None


def _chunks_covering(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


@idempotent
def flush(tr: Transaction, ns: Namespace, change: Flush) -> list[ChunkRecord]:
    """Data records, size, times and checksums, all or nothing, with one change-log record; returns
    the chunks past the new size whose files the caller deletes (shared ones stay for their clones)."""
    keys, ino = ns.keys, change.ino
    tr.frees_space = change.size < change.stored_size  # a truncated file: may spend the store's reserve
    attr = ns.attr_for_update(tr, ino)
    attr.size = change.size
    attr.atime_ns = change.atime_ns
    attr.mtime_ns = change.mtime_ns
    attr.ctime_ns = max(attr.ctime_ns, change.mtime_ns, now_ns())
    attr.chunked = change.inline is None
    freed: list[ChunkRecord] = []
    if change.inline is not None:
        filedata.write_inline(tr, keys, ino, change.inline)
    else:
        attr.allocated = change.allocated
        if not change.stored_chunked:
            filedata.clear_inline(tr, keys, ino)
        freed = filedata.drop_chunks_from(
            tr, keys, ino, _chunks_covering(change.size, ns.config.chunk_size_bytes)
        )
        for index, record in change.chunks.items():
            filedata.mark_clean(tr, keys, ino, index, record)
    ns.count_bytes(tr, attr, change.size - change.stored_size)
    ns.write_back(tr, attr, change.caller)
    if change.access is not None:
        provenance.record(tr, keys, change.access)
    return freed


def has_stale_chunks(tr: Transaction, ns: Namespace, ino: int) -> bool:
    """Whether ``drop_stale_chunks`` has work: read-only, so the usual answer (no) costs no commit and
    no operation record."""
    return _first_stale_index(tr, ns, ino) is not None


@idempotent
def drop_stale_chunks(tr: Transaction, ns: Namespace, ino: int) -> list[ChunkRecord]:
    """Remove the chunk records of ``ino`` past its stored size; returns them (their files are the
    caller's to delete)."""
    first = _first_stale_index(tr, ns, ino)
    if first is None:
        return []
    return filedata.drop_chunks_from(tr, ns.keys, ino, first)  # reads them again, serializably


def _first_stale_index(tr: Transaction, ns: Namespace, ino: int) -> int | None:
    """The first chunk index past the stored size, if records lie there; None if none do, or if one of
    them is marked dirty: it may belong to a writer on another mount."""
    stored = ns.getattr(tr, ino)
    covered = _chunks_covering(stored.size, ns.config.chunk_size_bytes) if stored.chunked else 0
    records = filedata.read_chunks(tr, ns.keys, ino)
    beyond = [record for index, record in records.items() if index >= covered]
    if not beyond or any(record.dirty for record in beyond):
        return None
    return covered
