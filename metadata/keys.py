"""The schema: every key of a filesystem is built here and nowhere else, and this table says what each holds.

All keys of one filesystem live under the subspace ``('fusefs', name)``, so several filesystems share a
store (one FoundationDB cluster) without seeing each other.  Keys are tuples (FoundationDB's tuple
encoding, so they sort element by element) whose first element is the record kind: records of one kind
are contiguous, and a range read lists one directory, one file's chunks or every orphan.  An inode
number inside a key is always ``ino8``, an 8-byte little-endian string, so consecutive inodes scatter
over FoundationDB's shards instead of piling onto one (JuiceFS and 3FS do the same); within a kind,
the records of one inode are contiguous (``ino8`` is the element after the kind).  Values are msgpack
unless said otherwise (metadata/model.py decodes and checks them).

==================  ======================================  ============================================
kind                key (under ``('fusefs', name)``)        value
==================  ======================================  ============================================
settings            ``('conf',)``                           ``FsConfig`` as a map (model.py): block
                                                            dirs, sizes, ``fs_id``, ``format_version``,
                                                            data tier ``data_url``, ``s3_endpoint``
inode attributes    ``('a', ino8)``                         ``InodeAttr`` fields as a list (model.py)
directory entry     ``('e', parent ino8, name bytes)``      ``[ino, S_IFMT of its mode]``
xattr               ``('x', ino8, name bytes)``             the raw value (bytes, not msgpack); the
                                                            POSIX ACLs ``system.posix_acl_access`` and
                                                            ``_default`` in the kernel's binary format
                                                            (acl.py)
inline data piece   ``('d', ino8, index int)``              raw bytes, ``INLINE_PIECE_BYTES`` each
                                                            (filedata.py); the last may be shorter
chunk record        ``('c', ino8, index int)``              ``ChunkRecord`` as a list: chunk id, block
                                                            dir index, checksum table, dirty flag,
                                                            then, with a data tier once uploaded, the
                                                            object version (blocks/objects.py)
chunk owner         ``('b', chunk id int)``                 ``ino`` (int): one inode referring to it
chunk references    ``('r', chunk id int)``                 the number of chunk records referring to the
                                                            chunk, only while it is 2 or more (clones
                                                            share chunks: metadata/clone.py)
dirty chunk mark    ``('w', ino8, index int)``              the writer's session id (raw bytes; ``b""``
                                                            before sessions existed)
orphan              ``('o', ino8)``                         ``[unlinked at ns, session id]`` (a bare
                                                            time before sessions existed)
trash record        ``('t', ino8)``                         ``[removed at ns, parent ino, name, uid]``
                                                            of an inode moved into ``/.trash``
                                                            (metadata/trash.py)
mount session       ``('s', session id bytes)``             ``Session`` as a list (sessions.py)
counter shard       ``('n', name str, shard int)``          little-endian int64, changed by atomic add
id pool             ``('id', kind str)``                    the next free id (int) of ``inode``, ``chunk``
operation result    ``('op', minute int, op id bytes,       a piece of a committed operation's result
                    piece int)``                            (idempotency.py), trimmed after minutes
change-log record   ``('L', versionstamp)``                 ``[time ns, op, uid, ino, parent, name,
                                                            new parent, new name, session]``
change-log head     ``('H',)``                              little-endian int64, +1 per log record
change-log trimmed  ``('LT',)``                             the 10-byte versionstamp of the last record
                                                            trimmed (metadata/changelog.py)
provenance by inode ``('pi', ino8, opened ns int, session     ``Access`` as a list (provenance.py): one
                    bytes, handle int)``                    open/close of a file, written at its close
provenance by user  ``('pu', uid int, opened ns int,        the same list
                    session bytes, handle int)``
provenance by time  ``('pt', written ns int, session        ``[ino, uid, opened ns]``: trimming order
                    bytes, handle int)``
log consumer        ``('LC', name str)``                    ``[cursor versionstamp, created ns, acked
                                                            ns]``: a named consumer's last acknowledged
                                                            record (metadata/consumers.py)
quotas exist        ``('qf',)``                             ``1`` once a quota was set (quota.py): without
                                                            it creates read nothing more
directory quota     ``('q', dir ino8)``                     ``[max bytes, max inodes]`` (0: no limit)
quota charges       ``('qc', ino8)``                        the quota directories above the inode, which
                                                            its size and itself count against
quota usage shard   ``('qu', dir ino8, name str, shard      little-endian int64 (``bytes``, ``inodes``),
                    int)``                                  changed by atomic add
name index          ``('N', name bytes, parent ino8)``      ``ino8`` (metadata/index.py): one per entry
extension index     ``('X', extension bytes, parent ino8,   ``ino8``: one per entry, so ``*.parquet`` is
                    name bytes)``                           a range read, and within one directory too
subdirectory index  ``('D', parent ino8, name bytes)``      ``ino8``: one per directory's entry, so the
                                                            directories of a subtree are listed without
                                                            reading the files' entries
link back-reference ``('P', ino8, parent ino8, name         ``b""``: one per entry, so an inode's paths
                    bytes)``                                are found from the inode (metadata/paths.py)
xattr value index   ``('V', xattr name bytes, value         ``b""``: one per xattr whose value has at
                    bytes, ino8)``                          most ``VALUE_INDEX_MAX_BYTES`` (index.py)
xattr hash index    ``('VH', xattr name bytes, hash         ``b""``: one per longer xattr value (the
                    16 bytes, ino8)``                       first 16 bytes of its SHA-256)
JSON field index    ``('J', xattr name bytes, field path    ``b""``: one per scalar field of a ``user.*``
                    str, type int, value, ino8)``           xattr holding a JSON object (index.py)
==================  ======================================  ============================================

Invariants (each transaction function keeps them, in one transaction):

* Every inode but the root has at least one entry naming it, or is an orphan (its ``nlink`` is 0 and it
  is still open) and has an orphan record; the root has attributes from ``format`` on.
* An entry's ``ino`` has attributes; a directory's attributes name its ``parent``, and its ``nlink`` is
  2 plus its subdirectories.
* A file's data is either inline pieces (``chunked`` false: they hold exactly ``size`` bytes) or chunk
  records (``chunked`` true, never back); each chunk record's chunk id has a chunk owner record naming
  that inode, or, when several records share the chunk (clones), naming one of them, with a chunk
  references record counting them; a chunk id is used twice only so.
* A dirty mark exists only beside a chunk record (or for a chunk being created) and names a session;
  a session without a live mount's heartbeat is recovered by a live one (sessions.py, recovery.py).
* The index records (name, extension, subdirectory, link back-reference, xattr value and hash,
  JSON field) exist only in a filesystem whose settings turn them on (``FsConfig.search_index``:
  ``mkfs --search-index`` or ``fusefs index enable``); there they are exactly those metadata/index.py
  derives from the entries and xattrs, changed in the transaction that changes them (``index.check``
  proves it).
* The counters ``inodes`` and ``bytes`` (summed over their shards for statvfs) change in the
  transaction that creates or deletes the inode or changes the size; an id pool's value is above every
  id it handed out.

``FORMAT_VERSION`` is the version of this layout, recorded in the settings: a filesystem written with
an older one is migrated at its first read-write opening (metadata/migration.py).
"""

from __future__ import annotations

import re
import struct

import fdb.tuple

from metadata.store import versionstamped_key

_FS_ROOT = "fusefs"

#: The version of the key layout (recorded in the settings as ``format_version``):
#: 1: orphan and dirty-chunk keys held their inode as a tuple integer;
#: 2: every inode inside a key is ``ino8``;
#: 3: the secondary indexes (name, suffix, link back-reference, xattr value and hash, JSON field), in
#: filesystems whose settings turn them on;
#: 4: the suffix index gives way to the extension and subdirectory indexes (subtree queries), and
#: the attributes of an inode with quota charges say so (``InodeAttr.quota_charged``).
FORMAT_VERSION = 4

# fdb.tuple's type codes: a key's element after the kind starts with one of them.
_BYTES_CODE = b"\x01"
_INT_CODES = (b"\x0b", b"\x1e")  # every integer (negative, zero, positive) sorts in [0x0b, 0x1e)

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
_LOG_TRIMMED = "LT"
_LOG_CONSUMER = "LC"
_ACCESS_BY_INODE = "pi"
_ACCESS_BY_USER = "pu"
_ACCESS_BY_TIME = "pt"
_SESSION = "s"
_CHUNK_REFS = "r"
_TRASH = "t"
_QUOTA_FLAG = "qf"
_QUOTA = "q"
_QUOTA_CHARGES = "qc"
_QUOTA_USAGE = "qu"
_NAME_INDEX = "N"
_V3_SUFFIX_INDEX = "R"
_EXTENSION_INDEX = "X"
_SUBDIRECTORY = "D"
_LINK = "P"
_XATTR_VALUE = "V"
_XATTR_HASH = "VH"
_JSON_FIELD = "J"


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


def _range_of(prefix: bytes) -> tuple[bytes, bytes]:
    """Every key extending ``prefix`` by whole elements (an element never starts with 0xff)."""
    return prefix, prefix + b"\xff"


def _strinc(key: bytes) -> bytes:
    """The first key after every key that starts with ``key`` (FoundationDB's ``strinc``)."""
    stripped = key.rstrip(b"\xff")
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def _open_bytes(part: bytes) -> bytes:
    """A bytes element without its terminator: the common start of every element extending ``part``."""
    return _element(part)[:-1]


def _ino_of(element: object) -> int:
    assert isinstance(element, bytes) and len(element) == 8, element
    return int.from_bytes(element, "little")


def scalar_element(value: bool | float | str) -> bytes:
    """A boolean, double or string tuple element, encoded exactly as ``fdb.tuple.pack`` does (by hand, as
    ``_element``: a setxattr of a JSON object builds one per field)."""
    if isinstance(value, bool):
        return b"\x27" if value else b"\x26"
    if isinstance(value, float):
        # The sign bit flipped, and a negative number's other bits too, so that bytes sort as numbers.
        (bits,) = struct.unpack(">Q", struct.pack(">d", value))
        return b"\x21" + (bits ^ (_ALL_BITS if bits >> 63 else _SIGN_BIT)).to_bytes(8, "big")
    return _element(value)


_SIGN_BIT, _ALL_BITS = 1 << 63, (1 << 64) - 1


def extension(name: bytes) -> bytes:
    """What follows the last dot of ``name`` (``b""`` if it has none): ``*.parquet`` reads one range."""
    return name.rpartition(b".")[2] if b"." in name else b""


def _element_end(key: bytes, start: int) -> int:
    """Where the bytes element whose contents begin at ``start`` ends: its 0x00 terminator, the first zero
    byte not escaped by a 0xff after it (no element's type code is 0xff).  One regular-expression search:
    an inode's eight bytes hold several escaped zeros, which a loop would step over one by one."""
    found = _TERMINATOR.search(key, start)
    if found is None:
        raise ValueError(f"no element terminator after byte {start} of key {key!r}")
    return found.start()


_TERMINATOR = re.compile(b"\x00(?!\xff)")


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
        self._name_kind = self._key(_NAME_INDEX)
        self._extension_kind = self._key(_EXTENSION_INDEX)
        self._link_kind = self._key(_LINK)
        self._attr_kind = self._key(_ATTR)  # attr() is built for every inode a request touches

    def _key(self, *parts: str | bytes | int) -> bytes:
        return self.prefix + b"".join(map(_element, parts))

    def whole_filesystem(self) -> tuple[bytes, bytes]:
        return _range_of(self.prefix)

    def config(self) -> bytes:
        return self._key(_CONFIG)

    # inodes
    def attr(self, ino: int) -> bytes:
        return self._attr_kind + _element(_ino(ino))

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

    def entry_name_in(self, entries_begin: bytes, key: bytes) -> bytes:
        """The name of ``key``, an entry key of the directory whose ``entries`` range starts at
        ``entries_begin``: only the last element is decoded (a listing decodes thousands)."""
        element = key[len(entries_begin) :]
        assert key.startswith(entries_begin) and element[:1] == b"\x01" and element[-1:] == b"\x00", key
        return element[1:-1].replace(b"\x00\xff", b"\x00")

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

    def chunk_refs(self, chunk_id: int) -> bytes:
        """How many chunk records share the chunk, while more than one does (metadata/clone.py)."""
        return self._key(_CHUNK_REFS, chunk_id)

    def all_chunk_refs(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_CHUNK_REFS))

    def chunk_refs_id(self, key: bytes) -> int:
        return int(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    def dirty_chunk(self, ino: int, index: int) -> bytes:
        """Marks a chunk being written: its checksums may not match its file until the writer is done.
        The value is the writer's session id (empty in filesystems made before sessions existed)."""
        return self._key(_DIRTY_CHUNK, _ino(ino), index)

    def dirty_chunks_of(self, ino: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_DIRTY_CHUNK, _ino(ino)))

    def dirty_chunks(self) -> tuple[bytes, bytes]:
        return self._typed_range(_DIRTY_CHUNK, _BYTES_CODE, b"\x02")

    def dirty_chunk_of(self, key: bytes) -> tuple[int, int]:
        _, ino, index = fdb.tuple.unpack(key[len(self.prefix) :])
        return _ino_of(ino), int(index)

    # bookkeeping
    def orphan(self, ino: int) -> bytes:
        """An inode without names, still open: the value names the session that unlinked it."""
        return self._key(_ORPHAN, _ino(ino))

    def orphans(self) -> tuple[bytes, bytes]:
        return self._typed_range(_ORPHAN, _BYTES_CODE, b"\x02")

    def orphan_ino(self, key: bytes) -> int:
        return _ino_of(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    def trash_record(self, ino: int) -> bytes:
        """Where an inode moved into the trash came from (metadata/trash.py)."""
        return self._key(_TRASH, _ino(ino))

    def trash_records(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_TRASH))

    def trash_ino(self, key: bytes) -> int:
        return _ino_of(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    # format 1's keys, read only by the migration to format 2 (metadata/migration.py)
    def v1_orphans(self) -> tuple[bytes, bytes]:
        """Orphan keys of format 1: ``('o', ino int)``."""
        return self._typed_range(_ORPHAN, *_INT_CODES)

    def v1_dirty_chunks(self) -> tuple[bytes, bytes]:
        """Dirty-chunk marks of format 1: ``('w', ino int, index int)``."""
        return self._typed_range(_DIRTY_CHUNK, *_INT_CODES)

    def v1_parts(self, key: bytes) -> tuple[int, ...]:
        """The integers after the kind of a format-1 orphan or dirty-chunk key."""
        return tuple(int(part) for part in fdb.tuple.unpack(key[len(self.prefix) :])[1:])

    def _typed_range(self, kind: str, first_code: bytes, end_code: bytes) -> tuple[bytes, bytes]:
        """The keys of ``kind`` whose next element's type code is in [first_code, end_code): it keeps
        one format's keys apart from another's of the same kind."""
        kind_key = self._key(kind)
        return kind_key + first_code, kind_key + end_code

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

    # directory quotas (metadata/quota.py)
    def quota_flag(self) -> bytes:
        return self._key(_QUOTA_FLAG)

    def quota(self, ino: int) -> bytes:
        return self._key(_QUOTA, _ino(ino))

    def quotas(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_QUOTA))

    def quota_ino(self, key: bytes) -> int:
        """The directory of a quota key, or the inode of a quota-charges key."""
        return _ino_of(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    def quota_charges(self, ino: int) -> bytes:
        return self._key(_QUOTA_CHARGES, _ino(ino))

    def all_quota_charges(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_QUOTA_CHARGES))

    def quota_charges_ino(self, key: bytes) -> int:
        return _ino_of(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    def quota_usage(self, ino: int, name: str, shard: int) -> bytes:
        return self._key(_QUOTA_USAGE, _ino(ino), name, shard)

    def quota_usages(self, ino: int, name: str | None = None) -> tuple[bytes, bytes]:
        if name is None:
            return _range_of(self._key(_QUOTA_USAGE, _ino(ino)))
        return _range_of(self._key(_QUOTA_USAGE, _ino(ino), name))

    def all_quota_usages(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_QUOTA_USAGE))

    def quota_usage_of(self, key: bytes) -> tuple[int, str, int]:
        """The directory, counter name and shard of a quota usage key."""
        _, ino, name, shard = fdb.tuple.unpack(key[len(self.prefix) :])
        return _ino_of(ino), str(name), int(shard)

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

    def log_trimmed(self) -> bytes:
        """The versionstamp of the last change-log record trimmed: a consumer whose cursor is older
        missed records."""
        return self._key(_LOG_TRIMMED)

    def log_consumer(self, name: str) -> bytes:
        return self._key(_LOG_CONSUMER, name)

    def log_consumers(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_LOG_CONSUMER))

    def log_consumer_name(self, key: bytes) -> str:
        return str(fdb.tuple.unpack(key[len(self.prefix) :])[1])

    # provenance (metadata/provenance.py)
    def access_by_inode(self, ino: int, opened_ns: int, session: bytes, handle: int) -> bytes:
        return self._key(_ACCESS_BY_INODE, _ino(ino), opened_ns, session, handle)

    def accesses_of_inode(self, ino: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_ACCESS_BY_INODE, _ino(ino)))

    def access_by_user(self, uid: int, opened_ns: int, session: bytes, handle: int) -> bytes:
        return self._key(_ACCESS_BY_USER, uid, opened_ns, session, handle)

    def accesses_of_user(self, uid: int, since_ns: int = 0) -> tuple[bytes, bytes]:
        """A user's records, those opened at or after ``since_ns``."""
        return self._key(_ACCESS_BY_USER, uid, since_ns), _range_of(self._key(_ACCESS_BY_USER, uid))[1]

    def access_by_time(self, written_ns: int, session: bytes, handle: int) -> bytes:
        return self._key(_ACCESS_BY_TIME, written_ns, session, handle)

    def accesses_by_time(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_ACCESS_BY_TIME))

    def access_time_of(self, key: bytes) -> tuple[int, bytes, int]:
        """(written ns, session, handle) of a provenance-by-time key."""
        _, written, session, handle = fdb.tuple.unpack(key[len(self.prefix) :])
        return int(written), bytes(session), int(handle)

    # secondary indexes (metadata/index.py)
    def name_index(self, name: bytes, parent: int) -> bytes:
        return self._key(_NAME_INDEX, name, _ino(parent))

    def names_with_prefix(self, prefix: bytes) -> tuple[bytes, bytes]:
        """Name-index records of every name starting with ``prefix`` (b"": every name)."""
        start = self._key(_NAME_INDEX) + _open_bytes(prefix)
        return start, _strinc(start)

    def names_equal(self, name: bytes) -> tuple[bytes, bytes]:
        return _range_of(self._key(_NAME_INDEX, name))

    def extension_index(self, name: bytes, parent: int) -> bytes:
        return self._key(_EXTENSION_INDEX, extension(name), _ino(parent), name)

    def names_with_extension(self, ext: bytes, parent: int | None = None) -> tuple[bytes, bytes]:
        """Extension-index records of names ending in ``.ext`` (``b""``: names without a dot): all of
        them, or those in directory ``parent``."""
        if parent is None:
            return _range_of(self._key(_EXTENSION_INDEX, ext))
        return _range_of(self._key(_EXTENSION_INDEX, ext, _ino(parent)))

    def extension_index_of(self, key: bytes) -> tuple[bytes, int]:
        """(name, parent) of an extension-index key, decoded by hand like ``name_index_of``."""
        start = len(self._extension_kind) + 1
        start = key.index(b"\x00", start) + 2  # after the extension (no zero byte in a name) and 0x01
        parent_end = _element_end(key, start)
        name = key[parent_end + 2 : -1]
        return name, _ino_of(key[start:parent_end].replace(b"\x00\xff", b"\x00"))

    def name_after(self, key: bytes, prefix: bytes) -> bytes:
        """The name that ends ``key`` after ``prefix`` (a range's start): the bytes element's contents
        (a name holds no zero byte, so none is escaped)."""
        return key[len(prefix) + 1 : -1]

    def name_index_of(self, key: bytes) -> tuple[bytes, int]:
        """(name, parent) of a name-index key.

        Decoded by hand: a query decodes every key of its range, and ``fdb.tuple.unpack`` is several
        times slower."""
        start = len(self._name_kind) + 1
        end = key.index(b"\x00", start)  # a name holds no zero byte (namespace.check_name)
        name = key[start:end]
        # The parent is the last element: its bytes up to the terminator, zero bytes escaped.
        parent = key[end + 2 : -1].replace(b"\x00\xff", b"\x00")
        return name, _ino_of(parent)

    def subdirectory(self, parent: int, name: bytes) -> bytes:
        return self._key(_SUBDIRECTORY, _ino(parent), name)

    def subdirectories(self, parent: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_SUBDIRECTORY, _ino(parent)))

    def subdirectory_name(self, key: bytes) -> bytes:
        """The name in a subdirectory-index key: its last element (a name holds no zero byte)."""
        return key[key.rindex(b"\x00", 0, -1) + 2 : -1]

    def v3_suffixes(self) -> tuple[bytes, bytes]:
        """Format 3's suffix index ``('R', reversed name, parent ino8)``, replaced by the extension index."""
        return _range_of(self._key(_V3_SUFFIX_INDEX))

    def link(self, ino: int, parent: int, name: bytes) -> bytes:
        return self._key(_LINK, _ino(ino), _ino(parent), name)

    def links(self, ino: int) -> tuple[bytes, bytes]:
        return _range_of(self._key(_LINK, _ino(ino)))

    def all_links(self) -> tuple[bytes, bytes]:
        return _range_of(self._key(_LINK))

    def link_of(self, key: bytes) -> tuple[int, int, bytes]:
        """(inode, parent, name) of a link back-reference key, decoded by hand like ``name_index_of``
        (a query decodes one per match)."""
        start = len(self._link_kind) + 1
        ino_end = _element_end(key, start)
        parent_end = _element_end(key, ino_end + 2)
        ino = key[start:ino_end].replace(b"\x00\xff", b"\x00")
        parent = key[ino_end + 2 : parent_end].replace(b"\x00\xff", b"\x00")
        return _ino_of(ino), _ino_of(parent), key[parent_end + 2 : -1]

    def xattr_value(self, name: bytes, value: bytes, ino: int) -> bytes:
        return self._key(_XATTR_VALUE, name, value, _ino(ino))

    def xattr_values(self, name: bytes, value: bytes | None = None) -> tuple[bytes, bytes]:
        """Value-index records of xattr ``name``: all of them, or those of one value."""
        if value is None:
            return _range_of(self._key(_XATTR_VALUE, name))
        return _range_of(self._key(_XATTR_VALUE, name, value))

    def xattr_hash(self, name: bytes, digest: bytes, ino: int) -> bytes:
        return self._key(_XATTR_HASH, name, digest, _ino(ino))

    def xattr_hashes(self, name: bytes, digest: bytes | None = None) -> tuple[bytes, bytes]:
        if digest is None:
            return _range_of(self._key(_XATTR_HASH, name))
        return _range_of(self._key(_XATTR_HASH, name, digest))

    def json_field(self, name: bytes, path: str, typed: tuple[int, bytes], ino: int) -> bytes:
        """``typed``: the value's type number and its encoded tuple element (index.py)."""
        return self._key(_JSON_FIELD, name, path, typed[0]) + typed[1] + _element(_ino(ino))

    def json_fields(self, name: bytes, path: str, type_number: int) -> tuple[bytes, bytes]:
        """Every JSON-field record of one field and one value type, in value order."""
        return _range_of(self._key(_JSON_FIELD, name, path, type_number))

    def json_field_at(self, name: bytes, path: str, typed: tuple[int, bytes]) -> bytes:
        """The first key of the records of one value: a bound for range queries."""
        return self._key(_JSON_FIELD, name, path, typed[0]) + typed[1]

    def index_source(self, key: bytes) -> bytes:
        """The entry or xattr key an index record derives from (metadata/index.py)."""
        parts = fdb.tuple.unpack(key[len(self.prefix) :])
        kind = parts[0]
        if kind == _NAME_INDEX:
            name, parent = self.name_index_of(key)
            return self.entry(parent, name)
        if kind == _EXTENSION_INDEX:
            name, parent = self.extension_index_of(key)
            return self.entry(parent, name)
        if kind == _SUBDIRECTORY:
            return self.entry(_ino_of(parts[1]), bytes(parts[2]))
        if kind == _LINK:
            return self.entry(_ino_of(parts[2]), bytes(parts[3]))
        assert kind in (_XATTR_VALUE, _XATTR_HASH, _JSON_FIELD), key
        return self.xattr(_ino_of(parts[-1]), bytes(parts[1]))

    def is_entry(self, key: bytes) -> bool:
        return key.startswith(self._key(_ENTRY))

    def index_ranges(self) -> dict[str, tuple[bytes, bytes]]:
        """Each index kind's whole range: for checks."""
        kinds = (_NAME_INDEX, _EXTENSION_INDEX, _SUBDIRECTORY, _LINK, _XATTR_VALUE, _XATTR_HASH, _JSON_FIELD)
        return {kind: _range_of(self._key(kind)) for kind in kinds}

    def last_ino(self, key: bytes) -> int:
        """The inode number that ends an xattr-value, xattr-hash or JSON-field key, decoded by hand from
        the end: the element's 8 bytes, a zero byte escaped as 0x00 0xff (the byte before them, the
        element's type code 0x01, is never 0x00)."""
        ino = bytearray()
        at = len(key) - 2  # before the terminator
        while len(ino) < 8:
            if key[at] == 0xFF and key[at - 1] == 0:
                ino.append(0)
                at -= 2
            else:
                ino.append(key[at])
                at -= 1
        ino.reverse()
        return int.from_bytes(ino, "little")
