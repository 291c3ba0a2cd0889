"""Pages of the change log for ``fusefs log``: records after a versionstamp or after a named consumer's
cursor (metadata/consumers.py), each with the paths it involves, in one transaction.

Paths are resolved in the transaction that reads the records.

A record names directories by inode (``parent``, ``new_parent``); their paths are those of the reading
transaction's snapshot, not of the moment the record was written: a directory renamed since shows its
new path, one removed since has none (None).  An inode's own paths (for records without a name:
setattr, write, xattr changes) need the link back-references, so they are offered only in a filesystem
with the search indexes (metadata/index.py); elsewhere they are None.
"""

from __future__ import annotations

from dataclasses import dataclass

from metadata import changelog, consumers
from metadata.changelog import LogRecord
from metadata.keys import FsKeys
from metadata.paths import Paths, join
from metadata.store import Transaction


@dataclass
class RecordPaths:
    #: ``parent``'s path joined with ``name`` (None: the record names no entry, or the directory is gone).
    path: bytes | None
    new_path: bytes | None
    #: The inode's current paths, for records that name no entry (None where unknown).
    inode_paths: list[bytes] | None


@dataclass
class Page:
    records: list[LogRecord]
    paths: list[RecordPaths]
    #: A consumer's missed records (``consumers.Batch.missed_through``).
    missed_through: bytes | None = None


def read_page(
    tr: Transaction, keys: FsKeys, after: bytes | None, consumer: str | None, limit: int, indexed: bool
) -> Page:
    """Up to ``limit`` records after versionstamp ``after`` (None: from the oldest), or, when ``consumer``
    is given, after that consumer's cursor."""
    if consumer is None:
        records, missed = changelog.read_log(tr, keys.name, after, limit), None
    else:
        batch = consumers.read(tr, keys, consumer, limit)
        records, missed = batch.records, batch.missed_through
    return Page(records, resolve(tr, keys, records, indexed), missed)


def resolve(tr: Transaction, keys: FsKeys, records: list[LogRecord], indexed: bool) -> list[RecordPaths]:
    paths = Paths(tr, keys, indexed=indexed)
    found = []
    for record in records:
        entry = _entry_path(paths, record.parent, record.name)
        inode_paths = paths.paths(record.ino) if entry is None and indexed else None
        found.append(RecordPaths(entry, _entry_path(paths, record.new_parent, record.new_name), inode_paths))
    return found


def _entry_path(paths: Paths, parent: int | None, name: bytes | None) -> bytes | None:
    if parent is None or name is None:
        return None
    directory = paths.directory(parent)
    return None if directory is None else join(directory, name)
