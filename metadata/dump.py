"""A filesystem's metadata as JSON lines, and back: ``fusefs dump`` and ``fusefs load``.

The dump holds what defines the filesystem: its settings (with its id), inodes, directory entries,
xattrs (POSIX ACLs among them), inline data, chunk records (with their object versions on a data
tier), dirty-chunk marks, orphan records, usage counters, chunk reference counts of clones' shared
chunks, trash records, directory quotas with their charges and usage, and id pools.  The settings hold
the data tier, the trash's days and the search-index choice.
Mount sessions, the change log and idempotency records are runtime state, and the secondary indexes are
derived from entries and xattrs (``load`` builds them): all are left out.  Bytes are
base64.  A header line carries the format version and the settings; a trailer line carries the number
of records, so a truncated dump is told from a complete one.  Chunk files are not in the dump: a loaded
filesystem uses the same block directories (their markers name the filesystem id, which is kept).

Both directions stream (constant memory) and work in bounded transactions.  A dump is a snapshot only
of an unmounted filesystem (pages are separate transactions: metadata/scan.py).  ``load`` writes the
settings key last, in the transaction that checks the name is still free: until then no command sees a
filesystem under the name, and a failed load clears what it wrote.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from metadata import index
from metadata.keys import FsKeys
from metadata.model import ChunkRecord, FsConfig, InodeAttr, InodeId, pack, unpack, unpack_list
from metadata.namespace import UnknownFilesystem, list_filesystems
from metadata.scan import scan
from metadata.store import CorruptValue, Store, Transaction, decode_int64, encode_int64

FORMAT = "fusefs-dump"
#: 2: quotas, and chunk records' object versions; a version-1 dump still loads unless it is of a
#: filesystem with an object data tier, whose chunks it cannot find without those versions.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, FORMAT_VERSION)
#: Records written per load transaction (values are at most an 8 KiB inline piece or a 64 KiB xattr).
LOAD_BATCH_RECORDS = 1000
ID_POOLS = ("inode", "chunk")
#: Every field, the mark of an inode a quota counts too (dumps of version 1 lack it: they hold no quotas).
_ATTR_FIELDS = [f.name for f in fields(InodeAttr)[1:]]

Pair = tuple[bytes, bytes]


class DumpError(Exception):
    """A dump that cannot be loaded (damaged, truncated, other format) or a name or id already taken."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"expected base64 text, got {text!r:.40}")
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class _Kind:
    """One kind of record: its key range, and its conversion to and from a JSON object."""

    tag: str
    range: Callable[[FsKeys], Pair]
    to_json: Callable[[FsKeys, bytes, bytes], dict[str, Any]]
    from_json: Callable[[FsKeys, dict[str, Any]], list[Pair]]


def _inode_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    attr = InodeAttr.decode(keys.attr_ino(key), value)
    values = {name: getattr(attr, name) for name in _ATTR_FIELDS}
    values["target"] = _b64(attr.target)
    return {"ino": attr.ino, "attr": values}


def _inode_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    values = dict(record["attr"])
    values["target"] = _bytes(values["target"])
    attr = InodeAttr(InodeId(int(record["ino"])), **values)
    # Re-decoded: a value the dump damaged is refused here, not at the first stat after mount.
    InodeAttr.decode(attr.ino, attr.encode())
    return [(keys.attr(attr.ino), attr.encode())]


def _entry_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    parent, name = keys.entry_of(key)
    ino, kind = unpack_list(value, f"entry {name!r} of directory {parent}", (int, int))
    return {"parent": parent, "name": _b64(name), "ino": ino, "type": kind}


def _entry_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    value = pack([_int(record["ino"]), _int(record["type"])])
    return [(keys.entry(_int(record["parent"]), _bytes(record["name"])), value)]


def _xattr_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    ino, name = keys.xattr_of(key)
    return {"ino": ino, "name": _b64(name), "value": _b64(value)}


def _xattr_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    return [(keys.xattr(_int(record["ino"]), _bytes(record["name"])), _bytes(record["value"]))]


def _inline_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    ino, index = keys.data_key_of(key)
    return {"ino": ino, "index": index, "data": _b64(value)}


def _inline_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    return [(keys.inline_piece(_int(record["ino"]), _int(record["index"])), _bytes(record["data"]))]


def _chunk_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    ino, index = keys.data_key_of(key)
    chunk = ChunkRecord.decode(value)
    return {
        "ino": ino,
        "index": index,
        "chunk_id": chunk.chunk_id,
        "dir": chunk.dir_index,
        "checksums": _b64(chunk.checksums),
        "dirty": chunk.dirty,
        "version": chunk.version,
    }


def _chunk_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    chunk = ChunkRecord(_int(record["chunk_id"]), _int(record["dir"]), _bytes(record["checksums"]))
    chunk.dirty = _bool(record["dirty"])
    chunk.version = _int(record.get("version", 0))  # none in a version-1 dump: no data tier
    ino, index = _int(record["ino"]), _int(record["index"])
    # The reverse key chunk id -> inode is derived, exactly as the data path writes it.
    return [(keys.chunk(ino, index), chunk.encode()), (keys.chunk_owner(chunk.chunk_id), pack(ino))]


def _dirty_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    ino, index = keys.dirty_chunk_of(key)
    return {"ino": ino, "index": index, "session": _b64(value)}


def _dirty_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    return [(keys.dirty_chunk(_int(record["ino"]), _int(record["index"])), _bytes(record["session"]))]


def _orphan_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    unpack(value, "orphan record")  # damaged values fail the dump, not the loaded filesystem
    return {"ino": keys.orphan_ino(key), "value": _b64(value)}


def _orphan_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    value = _bytes(record["value"])
    unpack(value, "orphan record")
    return [(keys.orphan(_int(record["ino"])), value)]


def _refs_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    return {"chunk_id": keys.chunk_refs_id(key), "count": decode_int64(value)}


def _refs_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    return [(keys.chunk_refs(_int(record["chunk_id"])), encode_int64(_int(record["count"])))]


def _trash_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    unpack(value, "trash record")
    return {"ino": keys.trash_ino(key), "value": _b64(value)}


def _trash_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    value = _bytes(record["value"])
    unpack(value, "trash record")
    return [(keys.trash_record(_int(record["ino"])), value)]


def _counter_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    name, shard = keys.counter_of(key)
    return {"name": name, "shard": shard, "value": decode_int64(value)}


def _counter_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    name = _str(record["name"])
    return [(keys.counter(name, _int(record["shard"])), encode_int64(_int(record["value"], signed=True)))]


def _quota_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    ino = keys.quota_ino(key)
    max_bytes, max_inodes = unpack_list(value, f"quota of {ino}", (int, int))
    return {"ino": ino, "bytes": max_bytes, "inodes": max_inodes}


def _quota_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    value = pack([_int(record["bytes"]), _int(record["inodes"])])
    # The flag that makes creates look for quotas is derived, exactly as setting a quota writes it.
    return [(keys.quota(_int(record["ino"])), value), (keys.quota_flag(), pack(1))]


def _charges_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    ino = keys.quota_ino(key)
    return {"ino": ino, "dirs": [_int(d) for d in unpack(value, f"quota charges of {ino}")]}


def _charges_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    directories = record["dirs"]
    if not isinstance(directories, list):
        raise ValueError(f"expected a list of directories, got {directories!r:.40}")
    return [(keys.quota_charges(_int(record["ino"])), pack([_int(d) for d in directories]))]


def _usage_to(keys: FsKeys, key: bytes, value: bytes) -> dict[str, Any]:
    ino, name, shard = keys.quota_usage_of(key)
    return {"ino": ino, "name": name, "shard": shard, "value": decode_int64(value)}


def _usage_from(keys: FsKeys, record: dict[str, Any]) -> list[Pair]:
    name = _str(record["name"])
    value = encode_int64(_int(record["value"], signed=True))
    return [(keys.quota_usage(_int(record["ino"]), name, _int(record["shard"])), value)]


KINDS = [
    _Kind("inode", FsKeys.attrs, _inode_to, _inode_from),
    _Kind("entry", FsKeys.all_entries, _entry_to, _entry_from),
    _Kind("xattr", FsKeys.all_xattrs, _xattr_to, _xattr_from),
    _Kind("inline", FsKeys.all_inline_pieces, _inline_to, _inline_from),
    _Kind("chunk", FsKeys.all_chunks, _chunk_to, _chunk_from),
    _Kind("dirty", FsKeys.dirty_chunks, _dirty_to, _dirty_from),
    _Kind("orphan", FsKeys.orphans, _orphan_to, _orphan_from),
    _Kind("counter", FsKeys.all_counters, _counter_to, _counter_from),
    _Kind("refs", FsKeys.all_chunk_refs, _refs_to, _refs_from),
    _Kind("trash", FsKeys.trash_records, _trash_to, _trash_from),
    _Kind("quota", FsKeys.quotas, _quota_to, _quota_from),
    _Kind("quota_charges", FsKeys.all_quota_charges, _charges_to, _charges_from),
    _Kind("quota_usage", FsKeys.all_quota_usages, _usage_to, _usage_from),
]
_BY_TAG = {kind.tag: kind for kind in KINDS}


def _int(value: object, *, signed: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or (value < 0 and not signed):
        raise ValueError(f"expected a whole number, got {value!r:.40}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a name, got {value!r:.40}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r:.40}")
    return value


# -- dump ---------------------------------------------------------------------------------------------
def dump(store: Store, name: str) -> Iterator[str]:
    """The lines of a dump of filesystem ``name`` (each a JSON object, without newline)."""
    keys = FsKeys(name)
    raw = store.transact(lambda tr: tr.get(keys.config(), snapshot=True))
    if raw is None:
        raise UnknownFilesystem(f"no filesystem named '{name}' in {store.url}")
    config = FsConfig.decode(raw)
    pools = store.transact(lambda tr: [tr.get(keys.id_pool(pool), snapshot=True) for pool in ID_POOLS])
    yield json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "config": asdict(config)})
    count = 0
    for pool, value in zip(ID_POOLS, pools, strict=True):
        if value is not None:
            yield json.dumps({"t": "idpool", "kind": pool, "next": int(unpack(value, "id pool"))})
            count += 1
    for kind in KINDS:
        for key, value in scan(store, *kind.range(keys)):
            yield json.dumps({"t": kind.tag, **kind.to_json(keys, key, value)})
            count += 1
    yield json.dumps({"t": "end", "records": count})


# -- load ---------------------------------------------------------------------------------------------
def load(
    store: Store, name: str, lines: Iterable[str], progress: Callable[[int], None] = lambda n: None
) -> FsConfig:
    """Recreate the dumped filesystem as ``name`` in ``store``; returns its settings.

    Raises ``DumpError`` for a damaged or truncated dump, a taken name or a filesystem id already in the
    store; then nothing of the dump is left in the store."""
    keys = FsKeys(name)
    numbered = enumerate(lines, start=1)
    config = _header(name, next(numbered, (1, "")))
    _check_free(store, keys, config)
    try:
        for batch in _batches(keys, numbered, progress):
            store.transact(functools.partial(_write, batch=batch))
        if config.search_index:
            index.build(store, keys)  # the indexes are derived, not dumped
        store.transact(lambda tr: _finish(tr, store, keys, config))
    except BaseException:
        store.transact(lambda tr: _clear_unfinished(tr, keys))
        raise
    return config


def _header(name: str, numbered_line: tuple[int, str]) -> FsConfig:
    _, line = numbered_line
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DumpError("not a fusefs dump: its first line is not a fusefs dump header")
    version = header.get("version")
    if version not in READABLE_VERSIONS:
        raise DumpError(
            f"dump format version {version!r:.20} is not supported (this fusefs reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    settings = header.get("config")
    if not isinstance(settings, dict):
        raise DumpError("damaged dump header: no settings")
    try:
        config = FsConfig.decode(pack({**settings, "name": name}))
    except CorruptValue as error:
        raise DumpError(f"damaged dump header: {error}") from None
    if not config.fs_id:
        raise DumpError("damaged dump header: the settings hold no filesystem id")
    if version == 1 and config.data_url:
        raise DumpError(
            "a version-1 dump of a filesystem with an object data tier lacks its chunks' object versions: "
            "dump the filesystem again with this fusefs"
        )
    return config


def _check_free(store: Store, keys: FsKeys, config: FsConfig) -> None:
    for other in list_filesystems(store):
        if other.name == keys.name:
            raise DumpError(f"a filesystem named '{keys.name}' already exists in {store.url}")
        if other.fs_id == config.fs_id:
            raise DumpError(
                f"filesystem '{other.name}' in {store.url} already has id {config.fs_id}: a loaded copy "
                "would share its block directories"
            )
    store.transact(lambda tr: _clear_unfinished(tr, keys))


def _clear_unfinished(tr: Transaction, keys: FsKeys) -> None:
    """Remove the records of a load that did not finish: a name without settings is no filesystem."""
    if tr.get(keys.config()) is None:
        tr.clear_range(*keys.whole_filesystem())


def _batches(
    keys: FsKeys, numbered: Iterator[tuple[int, str]], progress: Callable[[int], None]
) -> Iterator[list[Pair]]:
    batch: list[Pair] = []
    count = 0
    for number, line in numbered:
        record = _parse(number, line)
        if record.get("t") == "end":
            if record.get("records") != count:
                raise DumpError(
                    f"damaged dump: line {number} counts {record.get('records')!r:.20} records, "
                    f"the dump holds {count}"
                )
            if next(numbered, None) is not None:
                raise DumpError(f"damaged dump: lines follow the end record (line {number})")
            yield batch
            return
        batch += _pairs(keys, number, record)
        count += 1
        if len(batch) >= LOAD_BATCH_RECORDS:
            progress(len(batch))
            yield batch
            batch = []
    raise DumpError(f"truncated dump: it ends after {count} records without its end record")


def _parse(number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as error:
        raise DumpError(f"damaged dump: line {number} is not JSON ({error})") from None
    if not isinstance(record, dict):
        raise DumpError(f"damaged dump: line {number} is not a record")
    return record


def _pairs(keys: FsKeys, number: int, record: dict[str, Any]) -> list[Pair]:
    tag = record.get("t")
    try:
        if tag == "idpool":
            if record["kind"] not in ID_POOLS:
                raise ValueError(f"unknown id pool {record['kind']!r:.40}")
            return [(keys.id_pool(record["kind"]), pack(_int(record["next"])))]
        kind = _BY_TAG.get(tag)  # type: ignore[arg-type]
        if kind is None:
            raise ValueError(f"unknown record type {tag!r:.40}")
        return kind.from_json(keys, record)
    except (KeyError, TypeError, ValueError, binascii.Error, CorruptValue) as error:
        what = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise DumpError(f"damaged dump: line {number}: {what}") from None


def _write(tr: Transaction, batch: list[Pair]) -> None:
    for key, value in batch:
        tr.set(key, value)


def _finish(tr: Transaction, store: Store, keys: FsKeys, config: FsConfig) -> None:
    if tr.get(keys.config()) is not None:
        raise DumpError(f"a filesystem named '{keys.name}' was created in {store.url} during the load")
    tr.set(keys.config(), config.encode())
