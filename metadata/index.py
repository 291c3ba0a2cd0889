"""Secondary indexes, written by the namespace transactions in the transaction that changes what they index.

Only in filesystems whose settings turn them on (``FsConfig.search_index``): they cost creates, renames
and setxattrs about a third of their rate on the embedded store, so the hooks' callers check the setting
the namespace was opened with and a filesystem without it holds no index record at all.

So a query (metadata/find.py) answers from exactly the state a listing in the same snapshot would show.
Every index record is derived from one directory entry or one xattr (``expected_*`` below say how), and
``check`` proves the store holds exactly the derived records.

* Per directory entry ``(parent, name) → ino``: a name-index record (exact and prefix queries), an
  extension-index record keyed by (extension, parent, name) (``*.parquet`` is one range read, and
  ``*.parquet`` under a directory one range read per directory below it) and a link back-reference
  under the inode (its paths, hard links included: metadata/paths.py); an entry naming a directory
  also has a subdirectory-index record (parent, name), so the directories below one are listed without
  reading their files' entries.
* Per xattr but the POSIX ACLs (kept by metadata/acl.py, which also rewrites them on chmod): its
  (name, value) when the value has at most ``VALUE_INDEX_MAX_BYTES`` bytes, otherwise its
  name and the first 16 bytes of the value's SHA-256 (an exact query on a long value reads the candidates'
  values to rule out hash collisions).  Either way a name-only query is a range read.
* Per ``user.*`` xattr whose value is a JSON object: one record per scalar field (nested objects give
  dotted paths ``a.b.c``; arrays are not indexed), typed so that ranges are in value order: booleans,
  numbers (as the tuple layer's order-preserving doubles: an integer beyond 2**53 is rounded in the
  key, and one beyond a double's range is not indexed), strings (their first
  ``JSON_STRING_INDEX_BYTES`` bytes: a query reads the candidates' values to compare exactly) and null.
  At most ``JSON_FIELDS_MAX`` fields per value are indexed, in document order, and field paths longer
  than ``JSON_PATH_MAX_BYTES`` are not: the rest of such a value is not searchable.  A value that is
  not a JSON object is a plain xattr, never an error.

These writes read nothing but the xattr values they replace or delete (a setxattr or removexattr reads
the value with the inode's attributes, in the same round trip; a deleted inode's xattrs are one range
read) and set or clear keys no other inode or entry
shares, so they add no conflicts between operations on different inodes; they are plain sets and
clears, so running a transaction function again repeats them harmlessly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from metadata import acl, scan
from metadata.keys import FsKeys, scalar_element
from metadata.model import InodeAttr, unpack_list
from metadata.store import Store, Transaction

#: Longer xattr values are indexed by a hash of the value instead of the value itself.
VALUE_INDEX_MAX_BYTES = 256
#: A JSON string field is indexed by at most this many of its first bytes.
JSON_STRING_INDEX_BYTES = 256
JSON_FIELDS_MAX = 256
JSON_PATH_MAX_BYTES = 512
HASH_BYTES = 16

# JSON value types, in the order their records sort within one field.
BOOLEAN, NUMBER, STRING, NULL = 0, 1, 2, 3

JsonScalar = bool | int | float | str | None


# -- what a record derives -----------------------------------------------------------------------------
def link_records(keys: FsKeys, parent: int, name: bytes, ino: int, is_dir: bool) -> list[tuple[bytes, bytes]]:
    """The index records of directory entry ``name`` in ``parent`` naming ``ino``."""
    ino8 = ino.to_bytes(8, "little")
    records = [
        (keys.name_index(name, parent), ino8),
        (keys.extension_index(name, parent), ino8),
        (keys.link(ino, parent, name), b""),
    ]
    if is_dir:
        records.append((keys.subdirectory(parent, name), ino8))
    return records


def xattr_records(keys: FsKeys, ino: int, name: bytes, value: bytes) -> list[bytes]:
    """The index keys of xattr ``name`` of ``ino`` holding ``value`` (their values are all ``b""``)."""
    if acl.is_acl(name):
        return []
    if len(value) <= VALUE_INDEX_MAX_BYTES:
        records = [keys.xattr_value(name, value, ino)]
    else:
        records = [keys.xattr_hash(name, value_digest(value), ino)]
    if name.startswith(b"user."):
        records += [keys.json_field(name, path, typed, ino) for path, typed in json_fields(value)]
    return records


def value_digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()[:HASH_BYTES]


def json_fields(value: bytes) -> list[tuple[str, tuple[int, bytes]]]:
    """(field path, typed key element) of each indexed scalar field of a JSON object; [] if ``value`` is
    not one."""
    document = parse_json_object(value)
    if document is None:
        return []
    fields = []
    for path, scalar in _scalars(document, ""):
        typed = typed_element(scalar)
        if typed is not None and len(path.encode()) <= JSON_PATH_MAX_BYTES:
            fields.append((path, typed))
            if len(fields) == JSON_FIELDS_MAX:
                break
    return fields


def parse_json_object(value: bytes) -> dict[str, Any] | None:
    if b"{" not in value:
        return None  # no object in any encoding json.loads reads: no parse (a failed one costs more)
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError), or too deep
        return None
    return document if isinstance(document, dict) else None


def _scalars(document: dict[str, Any], prefix: str) -> Iterator[tuple[str, JsonScalar]]:
    for field, item in document.items():
        path = prefix + field
        if isinstance(item, dict):
            yield from _scalars(item, path + ".")
        elif not isinstance(item, list):
            yield path, item


def typed_element(scalar: JsonScalar) -> tuple[int, bytes] | None:
    """A JSON scalar's type number and its order-preserving tuple element (None: not indexable)."""
    if scalar is None:
        return NULL, b""
    if isinstance(scalar, bool):
        return BOOLEAN, scalar_element(scalar)
    if isinstance(scalar, int | float):
        try:
            number = float(scalar)
        except OverflowError:
            return None
        return (NUMBER, scalar_element(number)) if math.isfinite(number) else None
    encoded = scalar.encode("utf-8", "surrogatepass")[:JSON_STRING_INDEX_BYTES]
    return STRING, scalar_element(encoded.decode("utf-8", "ignore"))


# -- hooks of the namespace transactions ---------------------------------------------------------------
def add_link(tr: Transaction, keys: FsKeys, parent: int, name: bytes, ino: int, is_dir: bool) -> None:
    for key, value in link_records(keys, parent, name, ino, is_dir):
        tr.set(key, value)


def remove_link(tr: Transaction, keys: FsKeys, parent: int, name: bytes, ino: int, is_dir: bool) -> None:
    for key, _ in link_records(keys, parent, name, ino, is_dir):
        tr.clear(key)


def rename_links(
    tr: Transaction,
    keys: FsKeys,
    source: tuple[int, bytes, InodeAttr],
    target: tuple[int, bytes, InodeAttr | None],
    *,
    exchange: bool,
) -> None:
    """A rename of ``source`` (parent, name, inode) onto ``target`` (parent, name, inode or None): the
    target's name now names the source's inode; with ``exchange`` the source's name names the
    target's."""
    old_parent, old_name, src = source
    new_parent, new_name, dst = target
    remove_link(tr, keys, old_parent, old_name, src.ino, src.is_dir)
    if dst is not None:
        remove_link(tr, keys, new_parent, new_name, dst.ino, dst.is_dir)
        if exchange:
            add_link(tr, keys, old_parent, old_name, dst.ino, dst.is_dir)
    add_link(tr, keys, new_parent, new_name, src.ino, src.is_dir)


def replace_xattr(
    tr: Transaction, keys: FsKeys, ino: int, name: bytes, old: bytes | None, new: bytes | None
) -> None:
    """Xattr ``name`` of ``ino`` goes from value ``old`` to ``new`` (None: absent); the caller read
    ``old`` in this transaction."""
    old_records = [] if old is None else xattr_records(keys, ino, name, old)
    new_records = [] if new is None else xattr_records(keys, ino, name, new)
    for key in set(old_records).difference(new_records):
        tr.clear(key)
    for key in new_records:
        tr.set(key, b"")


def add_xattr(tr: Transaction, keys: FsKeys, ino: int, name: bytes, value: bytes) -> None:
    """A new inode's xattr ``name`` holding ``value`` (a clone's copy)."""
    for key in xattr_records(keys, ino, name, value):
        tr.set(key, b"")


def drop_xattrs(tr: Transaction, keys: FsKeys, ino: int) -> None:
    """Before every xattr of inode ``ino`` is deleted with it."""
    for key, value in tr.iter_range(*keys.xattrs(ino)):
        for record in xattr_records(keys, ino, keys.xattr_name(key), value):
            tr.clear(record)


# -- building and proving the indexes ----------------------------------------------------------------
#: Entries or xattrs indexed per transaction by ``build``: far below FoundationDB's limits.
BUILD_BATCH = 500


def build(store: Store, keys: FsKeys, batch: int = BUILD_BATCH) -> None:
    """Write the index records of every entry and xattr (a filesystem made before the indexes, or loaded
    from a dump), in bounded transactions walking a cursor.

    Safe beside mounts that write indexes themselves: each step reads its batch serializably (a
    concurrent change to it conflicts and the step runs again), and a change behind or ahead of the
    cursor writes its own records.  Writing a record twice changes nothing."""
    for (begin, end), derive in ((keys.all_entries(), _entry_records), (keys.all_xattrs(), _xattr_records)):
        cursor: bytes | None = begin
        while cursor is not None:
            cursor = store.transact(
                functools.partial(_build_step, keys=keys, begin=cursor, end=end, batch=batch, derive=derive)
            )


Derive = Callable[[FsKeys, bytes, bytes], list[tuple[bytes, bytes]]]


def _build_step(
    tr: Transaction, keys: FsKeys, begin: bytes, end: bytes, batch: int, derive: Derive
) -> bytes | None:
    rows = tr.get_range(begin, end, limit=batch)
    for key, value in rows:
        for record, record_value in derive(keys, key, value):
            tr.set(record, record_value)
    return rows[-1][0] + b"\0" if len(rows) == batch else None


def _entry_records(keys: FsKeys, key: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    parent, name = keys.entry_of(key)
    ino, kind = unpack_list(value, f"entry {name!r} of directory {parent}", (int, int))
    return link_records(keys, parent, name, int(ino), stat.S_ISDIR(kind))


def _xattr_records(keys: FsKeys, key: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    ino, name = keys.xattr_of(key)
    return [(record, b"") for record in xattr_records(keys, ino, name, value)]


# -- proving and repairing the indexes -------------------------------------------------------------------
def expected(store: Store, keys: FsKeys) -> dict[bytes, bytes]:
    """Every index record the entries and xattrs of the filesystem derive (read in bounded pages)."""
    records: dict[bytes, bytes] = {}
    for (begin, end), derive in ((keys.all_entries(), _entry_records), (keys.all_xattrs(), _xattr_records)):
        for key, value in scan.scan(store, begin, end):
            records.update(derive(keys, key, value))
    return records


@dataclass(frozen=True)
class Difference:
    """An index record that disagrees with what the namespace derives."""

    key: bytes
    #: What the entry or xattr derives for ``key`` (None: no record should exist).
    wanted: bytes | None
    found: bytes | None

    def describe(self) -> str:
        if self.found is None:
            return f"index record {self.key!r} is missing"
        if self.wanted is None:
            return f"index record {self.key!r} matches no entry or xattr"
        return f"index record {self.key!r} has value {self.found!r}"


def differences(store: Store, keys: FsKeys) -> list[Difference]:
    """Records missing, records no entry or xattr derives, records with a wrong value; empty when the
    indexes match the namespace.  Read in pages: on a mounted filesystem a concurrent change can show
    up (``still_differs`` re-checks one in a transaction)."""
    wanted = expected(store, keys)
    found = []
    for begin, end in keys.index_ranges().values():
        for key, value in scan.scan(store, begin, end):
            if key not in wanted:
                found.append(Difference(key, None, value))
            elif (want := wanted.pop(key)) != value:
                found.append(Difference(key, want, value))
    return found + [Difference(key, value, None) for key, value in wanted.items()]


def check(store: Store, keys: FsKeys) -> list[str]:
    """``differences``, one line each."""
    return [difference.describe() for difference in differences(store, keys)]


def _wanted(tr: Transaction, keys: FsKeys, key: bytes) -> bytes | None:
    """What the namespace derives for index record ``key`` now: the entry or xattr it would derive from
    is read, and its records derived."""
    source = keys.index_source(key)
    raw = tr.get(source)
    if raw is None:
        return None
    derive = _entry_records if keys.is_entry(source) else _xattr_records
    return dict(derive(keys, source, raw)).get(key)


def still_differs(tr: Transaction, keys: FsKeys, key: bytes) -> bool:
    """Whether index record ``key`` disagrees with the namespace, in one transaction (fsck's re-check)."""
    return tr.get(key) != _wanted(tr, keys, key)


def repair_record(tr: Transaction, keys: FsKeys, key: bytes) -> None:
    """Make index record ``key`` what the namespace derives (set, or cleared)."""
    wanted = _wanted(tr, keys, key)
    if wanted is None:
        tr.clear(key)
    else:
        tr.set(key, wanted)
