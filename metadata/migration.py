"""Bring a filesystem written by an older fusefs to the current key layout (``keys.FORMAT_VERSION``).

Format 2 → 3 added the secondary indexes (metadata/index.py) to filesystems whose settings turn them on
(``search_index``), and 3 → 4 replaced format 3's suffix index by the extension and subdirectory
indexes: the step clears the old suffix records, ``index.build`` writes the records of every entry and
xattr.  Settings of format 2 predate the choice and have it off, so for them nothing is built; the step
stays so that an older fusefs refuses filesystems whose records it would not index.  Format 3 → 4 also
marks the attributes of every inode that has quota charges (``InodeAttr.quota_charged``), since a
flush, truncate or delete now reads the charges only of inodes so marked.  Then the version is recorded.

Runs at the filesystem's first read-write opening (a mount, gc or blocks add), before anything reads its
records, like the assignment of its id.  It re-keys records in bounded transactions, so a large
filesystem never needs one huge commit; each step is a pure function of what it reads, so a retried step
(or two mounts migrating at once) re-keys nothing twice, and the last step records the new version in
the settings.  A filesystem from a newer fusefs is left alone: ``format_problem`` refuses it."""

from __future__ import annotations

import functools
from collections.abc import Callable

from metadata import index
from metadata.keys import FORMAT_VERSION, FsKeys
from metadata.model import FsConfig, InodeAttr
from metadata.namespace import UnknownFilesystem, assign_fs_id
from metadata.store import Store, Transaction

#: Records re-keyed per transaction: far below FoundationDB's limits (10 MB, 5 s) for these small records.
BATCH_RECORDS = 1000


def upgrade(store: Store, name: str, candidate_id: str, batch: int = BATCH_RECORDS) -> FsConfig:
    """The settings of filesystem `name` once it has an id (`candidate_id` if it had none) and its records
    are in the current format."""
    config = assign_fs_id(store, name, candidate_id)
    while config.format_version < FORMAT_VERSION:
        if config.format_version == 1:
            config = store.transact(lambda tr: _step(tr, FsKeys(name), batch))
        else:
            if config.search_index:
                # Format 3's suffix index gives way to the extension and subdirectory indexes: one
                # range clear, then the records of what exists (writing an existing one changes nothing).
                store.transact(lambda tr: tr.clear_range(*FsKeys(name).v3_suffixes()))
                index.build(store, FsKeys(name), batch)
            _mark_quota_charged(store, FsKeys(name), batch)
            config = store.transact(lambda tr: _record_version(tr, FsKeys(name), FORMAT_VERSION))
    return config


def format_problem(config: FsConfig) -> str | None:
    """Why this fusefs cannot use the filesystem's records as they are, or None."""
    if config.format_version > FORMAT_VERSION:
        return (
            f"filesystem '{config.name}' was made by a newer fusefs (format {config.format_version}; this "
            f"one knows formats up to {FORMAT_VERSION}): use that fusefs"
        )
    if config.format_version < FORMAT_VERSION:
        return (
            f"filesystem '{config.name}' was made by an older fusefs (format {config.format_version}): "
            "mount it read-write once (without -o ro), which brings it to the current format"
        )
    return None


def _step(tr: Transaction, keys: FsKeys, batch: int) -> FsConfig:
    """Re-key up to `batch` records of format 1; when none is left, record format 2."""
    raw = tr.get(keys.config())
    if raw is None:
        raise UnknownFilesystem(f"no filesystem named '{keys.name}'")
    config = FsConfig.decode(raw)
    if config.format_version != 1:
        return config  # done meanwhile (another mount, or this step's earlier commit)
    left = batch
    renames: list[tuple[tuple[bytes, bytes], Callable[..., bytes]]] = [
        (keys.v1_orphans(), keys.orphan),
        (keys.v1_dirty_chunks(), keys.dirty_chunk),
    ]
    for (begin, end), new_key in renames:
        rows = tr.get_range(begin, end, limit=left)
        for key, value in rows:
            tr.clear(key)
            tr.set(new_key(*keys.v1_parts(key)), value)
        left -= len(rows)
        if not left:
            return config
    return _record_version(tr, keys, 2)


def _mark_quota_charged(store: Store, keys: FsKeys, batch: int) -> None:
    """Set ``quota_charged`` in the attributes of every inode with quota charges, ``batch`` at a time
    (setting it twice changes nothing)."""
    cursor: bytes | None = keys.all_quota_charges()[0]
    while cursor is not None:
        cursor = store.transact(functools.partial(_mark_step, keys=keys, begin=cursor, batch=batch))


def _mark_step(tr: Transaction, keys: FsKeys, begin: bytes, batch: int) -> bytes | None:
    rows = tr.get_range(begin, keys.all_quota_charges()[1], limit=batch)
    inos = [keys.quota_charges_ino(key) for key, _ in rows]
    for ino, raw in zip(inos, tr.get_many([keys.attr(ino) for ino in inos]), strict=True):
        if raw is not None:
            attr = InodeAttr.decode(ino, raw)
            attr.quota_charged = True
            tr.set(keys.attr(ino), attr.encode())
    return rows[-1][0] + b"\0" if len(rows) == batch else None


def _record_version(tr: Transaction, keys: FsKeys, version: int) -> FsConfig:
    raw = tr.get(keys.config())
    if raw is None:
        raise UnknownFilesystem(f"no filesystem named '{keys.name}'")
    config = FsConfig.decode(raw)
    config.format_version = max(config.format_version, version)
    tr.set(keys.config(), config.encode())
    return config
