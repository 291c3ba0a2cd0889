"""The key layout: every key of a filesystem is built here and nowhere else.

All keys of one filesystem live under the subspace ``('fusefs', name)``, so several filesystems share a
store (one FoundationDB cluster) without seeing each other.  Inode numbers inside keys are 8-byte
little-endian strings, so consecutive inodes scatter over FoundationDB's shards instead of piling onto
one (JuiceFS and 3FS do the same).  Within an inode's prefix sit its attributes, its directory entries
(when it is a directory: one range read lists it, in name order), its xattrs, inline data pieces and
chunk records.
"""

from __future__ import annotations

import struct

import fdb.tuple

from metadata.store import versionstamped_key

_FS_ROOT = "fusefs"

# Record kinds (one byte strings keep keys short).
_CONFIG = "conf"
_ATTR = "a"
_ENTRY = "e"
_XATTR = "x"
_INLINE = "d"
_CHUNK = "c"
_CHUNK_OWNER = "b"
_ORPHAN = "o"
_DIRTY_CHUNK = "w"
_COUNTER = "n"
_ID_POOL = "id"
_LOG = "L"
_OPERATION = "op"
_LOG_HEAD = "H"
_SESSION = "s"


def _ino(ino: int) -> bytes:
    return struct.pack("<Q", ino)


def _element(part: str | bytes | int) -> bytes:
    """One tuple element, encoded exactly as ``fdb.tuple.pack`` does, for the types keys use.

    Hand-written because keys are built on every request and ``fdb.tuple.pack`` costs microseconds
    per call, the largest share of a metadata transaction's CPU time."""
    if isinstance(part, bytes):
        return b"\x01" + part.replace(b"\x00", b"\x00\xff") + b"\x00"
    if isinstance(part, str):
        return b"\x02" + part.encode().replace(b"\x00", b"\x00\xff") + b"\x00"
    if 0 <= part < 2**63:
        length = (part.bit_length() + 7) // 8
        return bytes((0x14 + length,)) + part.to_bytes(length, "big")
    return fdb.tuple.pack((part,))


def _ino_of(raw: object) -> int:
    """The inode number of a key element made by ``_ino``."""
    assert isinstance(raw, bytes)
    return int(struct.unpack("<Q", raw)[0])


def _range_of(prefix: bytes) -> tuple[bytes, bytes]:
    return prefix, prefix + b"\xff"


def all_filesystems_range() -> tuple[bytes, bytes]:
    return fdb.tuple.range((_FS_ROOT,)).start, fdb.tuple.range((_FS_ROOT,)).stop


def filesystem_of(key: bytes) -> str:
    """The name of the filesystem a key belongs to."""
    return str(fdb.tuple.unpack(key)[1])


class FsKeys:
    """Keys of the filesystem called ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = fdb.tuple.pack((_FS_ROOT, name))

    def _key(self, *parts: str | bytes | int) -> bytes:
        return self.prefix + b"".join(map(_element, parts))

    def whole_filesystem(self) -> tuple[bytes, bytes]:
        return _range_of(self.prefix)

    def config(self) -> bytes:
        return self._key(_CONFIG)

    # inodes
    def attr(self, ino: int) -> bytes:
        return self._key(_ATTR, _ino(ino))

    def attrs(self) -> tuple[bytes, bytes]:
        """Every inode's attributes (in key order, not inode order): for whole-filesystem scans."""
        return _range_of(self._key(_ATTR))

    def attr_ino(self, key: bytes) -> int:
        return _ino_of(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    def entry(self, parent: int, name: bytes) -> bytes:
        return self._key(_ENTRY, _ino(parent), name)

    def entries(self, parent: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_ENTRY, _ino(parent)))

    def all_entries(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_ENTRY))

    def entry_of(self, key: bytes) -> tuple[int, bytes]:
        """(parent, name) of an entry key."""
        _, parent, name = fdb.tuple.unpack(key[len(self.prefix) :])
        return _ino_of(parent), bytes(name)

    def entry_name(self, key: bytes) -> bytes:
        name = fdb.tuple.unpack(key[len(self.prefix) :])[2]
        assert isinstance(name, bytes)
        return name

    def xattr(self, ino: int, name: bytes) -> bytes:
        return self._key(_XATTR, _ino(ino), name)

    def xattrs(self, ino: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_XATTR, _ino(ino)))

    def all_xattrs(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_XATTR))

    def xattr_of(self, key: bytes) -> tuple[int, bytes]:
        """(inode, name) of an xattr key."""
        _, ino, name = fdb.tuple.unpack(key[len(self.prefix) :])
        return _ino_of(ino), bytes(name)

    def xattr_name(self, key: bytes) -> bytes:
        name = fdb.tuple.unpack(key[len(self.prefix) :])[2]
        assert isinstance(name, bytes)
        return name

    # file data
    def inline_piece(self, ino: int, index: int) -> bytes:
        return self._key(_INLINE, _ino(ino), index)

    def inline_pieces(self, ino: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_INLINE, _ino(ino)))

    def all_inline_pieces(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_INLINE))

    def all_chunks(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_CHUNK))

    def data_key_of(self, key: bytes) -> tuple[int, int]:
        """(inode, index) of an inline piece or chunk record key."""
        _, ino, index = fdb.tuple.unpack(key[len(self.prefix) :])
        return _ino_of(ino), int(index)

    def chunk(self, ino: int, index: int) -> bytes:
        return self._key(_CHUNK, _ino(ino), index)

    def chunks(self, ino: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_CHUNK, _ino(ino)))

    def chunks_from(self, ino: int, first_index: int) -> tuple[bytes, bytes]:
        return self._key(_CHUNK, _ino(ino), first_index), self.chunks(ino)[1]

    def chunk_index(self, key: bytes) -> int:
        index = fdb.tuple.unpack(key[len(self.prefix) :])[2]
        assert isinstance(index, int)
        return index

    def chunk_owner(self, chunk_id: int) -> bytes:
        """Reverse index chunk id → inode, so garbage collection can tell a live chunk file."""
        return self._key(_CHUNK_OWNER, chunk_id)

    def chunk_owners(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_CHUNK_OWNER))

    def chunk_owner_id(self, key: bytes) -> int:
        return int(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    def dirty_chunk(self, ino: int, index: int) -> bytes:
        """Marks a chunk being written: its checksums may not match its file until the writer is done.
        The value is the writer's session id (empty in filesystems made before sessions existed)."""
        return self._key(_DIRTY_CHUNK, ino, index)

    def dirty_chunks_of(self, ino: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_DIRTY_CHUNK, ino))

    def dirty_chunks(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_DIRTY_CHUNK))

    def dirty_chunk_of(self, key: bytes) -> tuple[int, int]:
        _, ino, index = fdb.tuple.unpack(key[len(self.prefix) :])
        return int(ino), int(index)

    # bookkeeping
    def orphan(self, ino: int) -> bytes:
        """An inode without names, still open: the value names the session that unlinked it."""
        return self._key(_ORPHAN, ino)

    def orphans(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_ORPHAN))

    def orphan_ino(self, key: bytes) -> int:
        ino = fdb.tuple.unpack(key[len(self.prefix) :])[1]
        assert isinstance(ino, int)
        return ino

    # mount sessions
    def session(self, session_id: bytes) -> bytes:
        """The record of one mount session (metadata/sessions.py)."""
        return self._key(_SESSION, session_id)

    def sessions(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_SESSION))

    def counter(self, name: str, shard: int) -> bytes:
        return self._key(_COUNTER, name, shard)

    def all_counters(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_COUNTER))

    def counter_of(self, key: bytes) -> tuple[str, int]:
        _, name, shard = fdb.tuple.unpack(key[len(self.prefix) :])
        return str(name), int(shard)

    def counters(self, name: str) -> tuple[bytes, bytes]:
        return _range_of(self._key(_COUNTER, name))

    def id_pool(self, kind: str) -> bytes:
        return self._key(_ID_POOL, kind)

    # idempotency records
    def operation(self, minute: int, operation_id: bytes, piece: int) -> bytes:
        """A piece of the result of a committed operation, kept for a few minutes so that a retry after
        commit_unknown_result returns it instead of applying the operation twice."""
        return self._key(_OPERATION, minute, operation_id, piece)

    def operation_pieces(self, minute: int, operation_id: bytes) -> tuple[bytes, bytes]:
        return _range_of(self._key(_OPERATION, minute, operation_id))

    def operations_before(self, minute: int) -> tuple[bytes, bytes]:
        return self._key(_OPERATION), self._key(_OPERATION, minute)

    # change log
    def log_template(self) -> bytes:
        """A versionstamped key template: records sort in commit order."""
        return versionstamped_key(self._key(_LOG))

    def log_head(self) -> bytes:
        """A counter every change-log append increments: watched by followers."""
        return self._key(_LOG_HEAD)

    def log(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_LOG))

    def log_at(self, versionstamp: bytes) -> bytes:
        """The key of the record with this 10-byte versionstamp (built by hand: packing a Versionstamp
        with fdb.tuple needs libfdb_c loaded)."""
        return versionstamped_key(self._key(_LOG))[:-16] + versionstamp + b"\0\0"

    def log_after(self, versionstamp: bytes) -> bytes:
        return self.log_at(versionstamp) + b"\xff"

    def log_versionstamp(self, key: bytes) -> bytes:
        stamp = fdb.tuple.unpack(key[len(self.prefix) :])[1]
        return bytes(stamp.tr_version)
