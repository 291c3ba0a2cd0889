"""Checking a filesystem's metadata for consistency, and the transactions that repair it (``fusefs fsck``).

``check`` reads every record of the filesystem page by page (metadata/scan.py: bounded transactions, so
*not* one snapshot) and returns findings by class.  On an unmounted filesystem nothing changes between
pages.  On a mounted one a finding may be an artefact of a change made between two pages, so each
finding carries a ``recheck``: a transaction function that re-reads the records the finding is about in
one transaction and tells whether it still holds; only confirmed findings are reported.  For link counts
and unreachable inodes the re-check is that the inode's attributes are byte-for-byte what the scan read:
every change to an inode's names (link, unlink, rename) rewrites its attributes (nlink or ctime).

Repairs are transaction functions that re-read what they change, so a repair never acts on a picture
older than its own transaction.  They never delete data a record refers to: dangling entries point at
nothing, unreachable inodes are given a name in ``lost+found``, counts are recomputed.
"""

from __future__ import annotations

import functools
import stat
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from metadata import filedata
from metadata.index import add_link, differences, remove_link, repair_record, still_differs
from metadata.keys import FsKeys
from metadata.model import (
    ROOT_CALLER,
    ROOT_INODE,
    ChunkRecord,
    FsConfig,
    FSError,
    InodeAttr,
    pack,
    unpack,
    unpack_list,
)
from metadata.namespace import Namespace
from metadata.scan import scan
from metadata.store import CorruptValue, Store, StoreError, Transaction, decode_int64, encode_int64

LOST_FOUND = b"lost+found"

# Finding classes, in report order.
DAMAGED = "damaged values"
DANGLING = "entries pointing at missing inodes"
UNREACHABLE = "inodes no entry or orphan record refers to"
LINKS = "wrong link counts"
DIR_LINKS = "wrong directory link counts"
PARENTS = "wrong directory parent pointers"
INLINE = "inline data disagreeing with the size"
CHUNK_RECORDS = "chunk records of missing inodes or without their owner key"
MISSING_CHUNKS = "chunk records whose chunk file is missing"
BAD_CHECKSUMS = "chunk files failing their checksums"
UNOWNED_CHUNKS = "chunk files no record owns"
COUNTERS = "usage counters disagreeing with the sum"
INDEXES = "search index records disagreeing with the entries and xattrs"
CLASSES = [
    DAMAGED,
    DANGLING,
    UNREACHABLE,
    LINKS,
    DIR_LINKS,
    PARENTS,
    INLINE,
    CHUNK_RECORDS,
    MISSING_CHUNKS,
    BAD_CHECKSUMS,
    UNOWNED_CHUNKS,
    COUNTERS,
    INDEXES,
]


class LostFoundUnusable(StoreError):
    """/lost+found exists but cannot take unreachable inodes."""


Recheck = Callable[[Transaction], bool]
Repair = Callable[[Transaction], None]


@dataclass
class Finding:
    kind: str
    text: str
    #: Re-reads the records concerned in one transaction: does the finding still hold?
    recheck: Recheck | None = None
    #: Fixes it (re-reading what it changes); None when it cannot be fixed safely.
    repair: Repair | None = None
    #: An unreachable inode that can be given a name in lost+found (``reconnect``).
    lost: int | None = None


@dataclass
class _Inode:
    mode: int
    nlink: int
    parent: int
    size: int
    chunked: bool
    raw: bytes


@dataclass
class Scan:
    """What a pass over the records found; ``findings`` are unconfirmed until re-checked."""

    inodes: dict[int, _Inode] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    #: (inode, chunk index, record) of every chunk record, for the chunk-file checks (fusefs/fsck.py).
    chunks: list[tuple[int, int, ChunkRecord]] = field(default_factory=list)
    #: Chunk ids named by an owner key or a chunk record: their files are not garbage.
    owned_chunk_ids: set[int] = field(default_factory=set)
    inode_count: int = 0
    #: Inodes whose attributes do not decode: their data records are left alone, their size unknown.
    damaged: set[int] = field(default_factory=set)


def check(store: Store, config: FsConfig, progress: Callable[[int], None] = lambda n: None) -> Scan:
    keys = FsKeys(config.name)
    result = Scan()
    damaged = result.damaged
    for key, raw in scan(store, *keys.attrs()):
        ino = keys.attr_ino(key)
        result.inode_count += 1
        progress(1)
        try:
            attr = InodeAttr.decode(ino, raw)
        except CorruptValue as error:
            damaged.add(ino)
            result.findings.append(
                Finding(DAMAGED, str(error), _still_damaged(keys.attr(ino), _attr_check(ino)))
            )
            continue
        result.inodes[ino] = _Inode(attr.mode, attr.nlink, attr.parent, attr.size, attr.chunked, raw)
    inodes = result.inodes

    refs: dict[int, int] = defaultdict(int)
    parents: dict[int, list[int]] = defaultdict(list)
    subdirs: dict[int, int] = defaultdict(int)
    children: dict[int, list[int]] = defaultdict(list)
    for key, raw in scan(store, *keys.all_entries()):
        parent, name = keys.entry_of(key)
        try:
            child, _ = unpack_list(raw, f"entry {name!r} of directory {parent}", (int, int))
        except CorruptValue as error:
            result.findings.append(
                Finding(DAMAGED, str(error), _still_damaged(key, _entry_check(parent, name)))
            )
            continue
        if child not in inodes and child not in damaged or parent not in inodes and parent not in damaged:
            missing = child if child not in inodes else parent
            result.findings.append(
                Finding(
                    DANGLING,
                    f"entry {name!r} of directory {parent} -> inode {child}: inode {missing} does not exist",
                    _dangling(keys, parent, name),
                    _dangling_repair(keys, parent, name, config.search_index),
                )
            )
            continue
        refs[child] += 1
        children[parent].append(child)
        if child in inodes and stat.S_ISDIR(inodes[child].mode):
            parents[child].append(parent)
            subdirs[parent] += 1

    orphans = {keys.orphan_ino(key) for key, _ in scan(store, *keys.orphans())}
    # Inodes without any entry are the tops of detached trees (their contents come back with them);
    # what is reached neither from the root nor from one of them hangs in a directory loop.
    tops = [ino for ino in inodes if refs[ino] == 0 and ino != ROOT_INODE and ino not in orphans]
    reachable = _reachable(children, [int(ROOT_INODE), *tops, *orphans])
    for ino, node in inodes.items():
        if ino == ROOT_INODE:
            pass
        elif refs[ino] == 0 and ino not in orphans:
            result.findings.append(
                Finding(
                    UNREACHABLE,
                    f"inode {ino} ({_type(node.mode)})",
                    _unchanged(keys, ino, node.raw),
                    lost=ino,
                )
            )
        elif ino not in reachable and ino not in orphans:
            result.findings.append(
                Finding(
                    UNREACHABLE,
                    f"inode {ino} ({_type(node.mode)}) in a directory loop cut off from the root",
                    _unchanged(keys, ino, node.raw),
                )
            )
        if stat.S_ISDIR(node.mode):
            if ino in orphans and refs[ino] == 0:
                continue  # removed, still open: nlink 0 until reclaimed
            expected = 2 + subdirs[ino]
            if node.nlink != expected:
                result.findings.append(
                    Finding(
                        DIR_LINKS,
                        f"directory {ino}: nlink {node.nlink}, expected {expected}",
                        _unchanged(keys, ino, node.raw),
                        _set_fields(keys, ino, nlink=expected),
                    )
                )
            entered_from = (
                ROOT_INODE if ino == ROOT_INODE else (parents[ino][0] if len(parents[ino]) == 1 else None)
            )
            if entered_from is not None and node.parent != entered_from:
                result.findings.append(
                    Finding(
                        PARENTS,
                        f"directory {ino}: parent {node.parent}, "
                        f"but its entry is in directory {entered_from}",
                        _unchanged(keys, ino, node.raw),
                        _set_fields(keys, ino, parent=entered_from),
                    )
                )
            elif len(parents[ino]) > 1:
                result.findings.append(
                    Finding(
                        LINKS,
                        f"directory {ino} has {len(parents[ino])} entries",
                        _unchanged(keys, ino, node.raw),
                    )
                )
        elif refs[ino] and node.nlink != refs[ino]:
            result.findings.append(
                Finding(
                    LINKS,
                    f"inode {ino}: nlink {node.nlink}, {refs[ino]} entries refer to it",
                    _unchanged(keys, ino, node.raw),
                    _set_fields(keys, ino, nlink=refs[ino]),
                )
            )

    _check_inline(store, keys, result)
    _check_chunk_records(store, keys, result, damaged)
    _check_counters(store, keys, result)
    if config.search_index:
        _check_indexes(store, keys, result)
    return result


def _check_indexes(store: Store, keys: FsKeys, result: Scan) -> None:
    """Each index record that disagrees with the entry or xattr it derives from: re-checked and repaired
    one record at a time, from that entry or xattr as it is then (metadata/index.py)."""
    for difference in differences(store, keys):
        result.findings.append(
            Finding(
                INDEXES,
                difference.describe(),
                functools.partial(still_differs, keys=keys, key=difference.key),
                functools.partial(repair_record, keys=keys, key=difference.key),
            )
        )


def _reachable(children: dict[int, list[int]], starts: list[int]) -> set[int]:
    seen = set(starts)
    stack = list(starts)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _type(mode: int) -> str:
    kinds = {stat.S_IFDIR: "directory", stat.S_IFREG: "file", stat.S_IFLNK: "symlink"}
    return kinds.get(stat.S_IFMT(mode), "special file")


def _check_inline(store: Store, keys: FsKeys, result: Scan) -> None:
    lengths: dict[int, int] = defaultdict(int)
    for key, value in scan(store, *keys.all_inline_pieces()):
        lengths[keys.data_key_of(key)[0]] += len(value)
    for ino, length in lengths.items():
        node = result.inodes.get(ino)
        if ino in result.damaged:
            continue
        if node is None:
            problem = "of a missing inode"
        elif node.chunked or not stat.S_ISREG(node.mode):
            problem = f"of inode {ino}, which keeps no inline data"
        elif length > node.size:
            problem = f"of inode {ino}: {length} bytes, size {node.size}"
        else:
            continue
        result.findings.append(
            Finding(
                INLINE,
                f"inline data {problem}",
                _inline_recheck(keys, ino, length),
                _inline_repair(keys, ino),
            )
        )


def _check_chunk_records(store: Store, keys: FsKeys, result: Scan, damaged: set[int]) -> None:
    owners: dict[int, int] = {}
    for key, raw in scan(store, *keys.chunk_owners()):
        try:
            owners[keys.chunk_owner_id(key)] = filedata.unpack_ino(raw)
        except CorruptValue as error:
            result.findings.append(
                Finding(
                    DAMAGED,
                    f"owner of chunk {keys.chunk_owner_id(key)}: {error}",
                    _still_damaged(key, filedata.unpack_ino),
                )
            )
    result.owned_chunk_ids = set(owners)
    for key, raw in scan(store, *keys.all_chunks()):
        ino, index = keys.data_key_of(key)
        try:
            record = ChunkRecord.decode(raw)
        except CorruptValue as error:
            result.findings.append(
                Finding(
                    DAMAGED, f"chunk {index} of inode {ino}: {error}", _still_damaged(key, ChunkRecord.decode)
                )
            )
            continue
        if ino not in result.inodes and ino not in damaged:
            result.findings.append(
                Finding(
                    CHUNK_RECORDS,
                    f"chunk {index} of missing inode {ino}",
                    functools.partial(_chunk_of_missing_inode, keys=keys, key=key, ino=ino),
                )
            )
        elif record.chunk_id not in owners:  # a shared chunk's owner names one of its inodes (clones)
            result.findings.append(
                Finding(
                    CHUNK_RECORDS,
                    f"chunk {index} of inode {ino} (id {record.chunk_id}): owner key missing",
                    functools.partial(_owner_missing, keys=keys, ino=ino, index=index),
                    repair=functools.partial(_restore_owner, keys=keys, ino=ino, index=index),
                )
            )
        result.chunks.append((ino, index, record))
        # A file a record names is never unowned, whatever its owner key says: repair must not delete it.
        result.owned_chunk_ids.add(record.chunk_id)


def _check_counters(store: Store, keys: FsKeys, result: Scan) -> None:
    sums: dict[str, int] = defaultdict(int)
    for key, raw in scan(store, *keys.all_counters()):
        sums[keys.counter_of(key)[0]] += decode_int64(raw)
    expected = {
        "inodes": result.inode_count,
        "bytes": sum(node.size for node in result.inodes.values() if stat.S_ISREG(node.mode)),
    }
    if result.damaged:
        del expected["bytes"]  # the sizes of damaged inodes are unknown
    for name, value in expected.items():
        if sums[name] != value:
            result.findings.append(
                Finding(
                    COUNTERS,
                    f"{name} counter says {sums[name]}, the filesystem holds {value}",
                    repair=functools.partial(_set_counter, keys=keys, name=name, value=value),
                )
            )


# -- re-checks (one transaction each) -----------------------------------------------------------------
def _attr_check(ino: int) -> Callable[[bytes], object]:
    return lambda raw: InodeAttr.decode(ino, raw)


def _entry_check(parent: int, name: bytes) -> Callable[[bytes], object]:
    return lambda raw: unpack_list(raw, f"entry {name!r} of directory {parent}", (int, int))


def _still_damaged(key: bytes, decode: Callable[[bytes], object]) -> Recheck:
    def recheck(tr: Transaction) -> bool:
        raw = tr.get(key, snapshot=True)
        if raw is None:
            return False
        try:
            decode(raw)
        except CorruptValue:
            return True
        return False

    return recheck


def _dangling(keys: FsKeys, parent: int, name: bytes) -> Recheck:
    def recheck(tr: Transaction) -> bool:
        raw = tr.get(keys.entry(parent, name))
        if raw is None:
            return False
        child = int(unpack(raw, "entry")[0])
        return tr.get(keys.attr(child)) is None or tr.get(keys.attr(parent)) is None

    return recheck


def _dangling_repair(keys: FsKeys, parent: int, name: bytes, indexed: bool) -> Repair:
    def repair(tr: Transaction) -> None:
        raw = tr.get(keys.entry(parent, name))
        if raw is not None and _dangling(keys, parent, name)(tr):
            tr.clear(keys.entry(parent, name))
            if indexed:
                ino, kind = unpack(raw, "entry")
                remove_link(tr, keys, parent, name, int(ino), stat.S_ISDIR(kind))

    return repair


def _unchanged(keys: FsKeys, ino: int, raw: bytes) -> Recheck:
    return lambda tr: tr.get(keys.attr(ino), snapshot=True) == raw


def _inline_recheck(keys: FsKeys, ino: int, length: int) -> Recheck:
    def recheck(tr: Transaction) -> bool:
        raw = tr.get(keys.attr(ino), snapshot=True)
        pieces = sum(len(value) for _, value in tr.iter_range(*keys.inline_pieces(ino), snapshot=True))
        if raw is None:
            return pieces > 0
        attr = InodeAttr.decode(ino, raw)
        return pieces > 0 and (attr.chunked or not attr.is_reg or pieces > attr.size)

    return recheck


# -- repairs --------------------------------------------------------------------------------------------
def _set_fields(keys: FsKeys, ino: int, **values: int) -> Repair:
    def repair(tr: Transaction) -> None:
        raw = tr.get(keys.attr(ino))
        if raw is None:
            return
        attr = InodeAttr.decode(ino, raw)
        for name, value in values.items():
            setattr(attr, name, value)
        tr.set(keys.attr(ino), attr.encode())

    return repair


def _inline_repair(keys: FsKeys, ino: int) -> Repair:
    """Inline bytes past the size (or of an inode that keeps none) are read by nobody: trimmed."""

    def repair(tr: Transaction) -> None:
        raw = tr.get(keys.attr(ino))
        attr = None if raw is None else InodeAttr.decode(ino, raw)
        if attr is None or attr.chunked or not attr.is_reg:
            filedata.clear_inline(tr, keys, ino)
        else:
            filedata.write_inline(tr, keys, ino, filedata.read_inline(tr, keys, ino, attr.size))

    return repair


def _chunk_of_missing_inode(tr: Transaction, keys: FsKeys, key: bytes, ino: int) -> bool:
    return tr.get(key, snapshot=True) is not None and tr.get(keys.attr(ino), snapshot=True) is None


def _owner_missing(tr: Transaction, keys: FsKeys, ino: int, index: int) -> bool:
    raw = tr.get(keys.chunk(ino, index), snapshot=True)
    if raw is None:
        return False
    return tr.get(keys.chunk_owner(ChunkRecord.decode(raw).chunk_id), snapshot=True) is None


def chunk_unchanged(fs_name: str, ino: int, index: int, record: ChunkRecord) -> Recheck:
    """For a chunk file found missing or failing its checksums: its record is still the one checked.
    Files are deleted only after their records are dropped, so a file missing before this re-check,
    whose record is still there, was missing while its record existed."""
    keys = FsKeys(fs_name)
    return lambda tr: tr.get(keys.chunk(ino, index), snapshot=True) == record.encode()


def chunk_unowned(fs_name: str, chunk_id: int) -> Recheck:
    """For a chunk file no record owned at the scan: still none (a record is committed before its file
    is created, so a file listed before this re-check that has no owner now never will)."""
    keys = FsKeys(fs_name)
    return lambda tr: not filedata.chunk_is_live(tr, keys, chunk_id)


def _restore_owner(tr: Transaction, keys: FsKeys, ino: int, index: int) -> None:
    raw = tr.get(keys.chunk(ino, index))
    if raw is not None:
        tr.set(keys.chunk_owner(ChunkRecord.decode(raw).chunk_id), pack(ino))


def _set_counter(tr: Transaction, keys: FsKeys, name: str, value: int) -> None:
    tr.clear_range(*keys.counters(name))
    tr.set(keys.counter(name, 0), encode_int64(value))


def lost_found(store: Store, config: FsConfig) -> int:
    """The inode of ``/lost+found``, made (mode 0700, root's) if missing."""
    ns = Namespace(config)
    try:
        found = store.transact(lambda tr: ns.lookup(tr, ROOT_INODE, LOST_FOUND))
    except FSError:
        pass
    else:
        if not found.is_dir:
            raise LostFoundUnusable("/lost+found is not a directory: rename it so that fsck can make one")
        return int(found.ino)
    ino = store.transact(lambda tr: ns.reserve_ids(tr, "inode", 1))
    attr = store.transact(
        lambda tr: ns.create(tr, ROOT_INODE, LOST_FOUND, ino, stat.S_IFDIR | 0o700, ROOT_CALLER)
    )
    return int(attr.ino)


def reconnect(config: FsConfig, directory: int, ino: int) -> Repair:
    """Give unreachable inode ``ino`` the name ``#INO`` in ``directory`` (lost+found); counts are fixed by
    the next pass."""
    ns = Namespace(config)

    def repair(tr: Transaction) -> None:
        raw = tr.get(ns.keys.attr(ino))
        name = f"#{ino}".encode()
        if raw is None or tr.get(ns.keys.entry(directory, name)) is not None:
            return
        attr = InodeAttr.decode(ino, raw)
        ns._set_entry(tr, directory, name, attr)
        if config.search_index:
            add_link(tr, ns.keys, directory, name, ino, attr.is_dir)
        if attr.is_dir:
            attr.parent = directory
        elif attr.nlink == 0:
            attr.nlink = 1
        tr.set(ns.keys.attr(ino), attr.encode())

    return repair
