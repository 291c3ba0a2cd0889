"""The trash: with ``trash_days`` set, a removed file (its last name) or directory is moved into ``/.trash``
instead of being deleted, and purged once older than that.

An entry of ``/.trash`` is named ``<UTC time>-<parent ino>-<name>`` (cut at 255 bytes), so names sort by
removal time and say where they came from; a trash record keyed by the inode keeps the time, the parent
and the whole name.  ``rm -rf`` of a tree removes files, then the emptied directories: each goes to the
trash keeping its inode, so restoring a directory restores, after it, every entry whose recorded parent
is that directory, recursively: the tree comes back.  Inodes keep their numbers, owners and modes.

``/.trash`` is root's, mode 0700: only root sees and restores removed files (whoever owned them), as
with a backup.  Removing an entry from ``/.trash`` deletes it for good; removing ``/.trash`` itself is
refused (EBUSY) while the trash is on.
"""

from __future__ import annotations

import errno
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metadata.model import (
    NAME_MAX_BYTES,
    ROOT_CALLER,
    ROOT_INODE,
    FSError,
    InodeAttr,
    Removal,
    pack,
    unpack_list,
)
from metadata.store import Store, Transaction

if TYPE_CHECKING:
    from metadata.namespace import Namespace

TRASH_NAME = b".trash"
TRASH_MODE = stat.S_IFDIR | 0o700
_NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class TrashEntry:
    """One entry of ``/.trash``."""

    name: bytes
    attr: InodeAttr
    removed_ns: int
    parent: int
    original_name: bytes


def entry_name(removed_ns: int, parent: int, name: bytes) -> bytes:
    seconds, nanos = divmod(removed_ns, 1_000_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    return f"{stamp}-{parent}-".encode() + name[: NAME_MAX_BYTES - len(stamp) - 22]


def keep(
    tr: Transaction, ns: Namespace, parent: int, name: bytes, attr: InodeAttr, now: int
) -> Removal | None:
    """Move ``attr``, just removed as ``name`` from ``parent``, into the trash instead of detaching it;
    None when the trash is off or does not take it (another name remains, or it is removed from the
    trash itself: then its trash record goes and it is deleted as usual)."""
    if not ns.config.trash_days:
        return None
    if parent == ROOT_INODE and name == TRASH_NAME:  # its entry is gone already: tell it by name
        raise FSError(errno.EBUSY, "the trash cannot be removed while it is on")
    trash_ino = ns.entry(tr, ROOT_INODE, TRASH_NAME)
    if trash_ino is None:
        return None
    if parent == trash_ino:
        tr.clear(ns.keys.trash_record(attr.ino))
        return None
    if not attr.is_dir and attr.nlink != 1:
        return None
    trash_dir = ns.attr_for_update(tr, trash_ino)
    if not trash_dir.is_dir:
        return None
    removed = now
    while ns.entry(tr, trash_ino, entry_name(removed, parent, name)) is not None:
        removed += 1  # two removals of one name in one nanosecond
    attr.touch(when_ns=now)
    ns.move_into(tr, trash_dir, entry_name(removed, parent, name), attr)
    tr.set(ns.keys.trash_record(attr.ino), pack([removed, parent, name]))
    return Removal(attr)


def make_trash_dir(store: Store, ns: Namespace) -> None:
    """Create ``/.trash`` if it is missing (at mkfs, and at each read-write mount with the trash on)."""
    if store.transact(lambda tr: trash_dir(tr, ns)) is not None:
        return
    ino = store.transact(lambda tr: ns.reserve_ids(tr, "inode", 1))
    try:
        store.transact(lambda tr: ns.create(tr, ROOT_INODE, TRASH_NAME, ino, TRASH_MODE, ROOT_CALLER))
    except FSError as error:
        if error.errno != errno.EEXIST:
            raise


def trash_dir(tr: Transaction, ns: Namespace) -> int | None:
    try:
        attr = ns.lookup(tr, ROOT_INODE, TRASH_NAME)
    except FSError:
        return None
    return attr.ino if attr.is_dir else None


def entries(tr: Transaction, ns: Namespace, after: bytes | None, limit: int) -> tuple[list[TrashEntry], bool]:
    """Up to ``limit`` entries of ``/.trash`` after ``after``, oldest first; and whether that was all."""
    trash_ino = trash_dir(tr, ns)
    if trash_ino is None:
        return [], True
    page = ns.readdir_page(tr, trash_ino, after, limit)
    raws = tr.get_many([ns.keys.trash_record(attr.ino) for _, attr in page.entries], snapshot=True)
    found = []
    for (name, attr), raw in zip(page.entries, raws, strict=True):
        removed, parent, original = (
            unpack_list(raw, f"trash record of inode {attr.ino}", (int, int, bytes))
            if raw is not None
            else (0, 0, name)  # put there by hand: no record
        )
        found.append(TrashEntry(name, attr, removed, parent, original))
    return found, page.complete


def children(tr: Transaction, ns: Namespace, directory: int) -> list[int]:
    """The trashed inodes whose recorded parent is ``directory``: its removed contents."""
    found = []
    for key, raw in tr.iter_range(*ns.keys.trash_records(), snapshot=True):
        _, parent, _ = unpack_list(raw, "trash record", (int, int, bytes))
        if parent == directory:
            found.append(ns.keys.trash_ino(key))
    return found


def name_of(tr: Transaction, ns: Namespace, ino: int) -> bytes | None:
    """The name in ``/.trash`` of trashed inode ``ino`` (None: not there any more)."""
    raw = tr.get(ns.keys.trash_record(ino), snapshot=True)
    trash_ino = trash_dir(tr, ns)
    if raw is None or trash_ino is None:
        return None
    removed, parent, name = unpack_list(raw, f"trash record of inode {ino}", (int, int, bytes))
    candidate = entry_name(removed, parent, name)
    return candidate if ns.entry(tr, trash_ino, candidate) == ino else None


def original_name(tr: Transaction, ns: Namespace, ino: int) -> bytes | None:
    raw = tr.get(ns.keys.trash_record(ino), snapshot=True)
    if raw is None:
        return None
    return bytes(unpack_list(raw, f"trash record of inode {ino}", (int, int, bytes))[2])


def purge_entry(
    tr: Transaction, ns: Namespace, trash_ino: int, entry: TrashEntry, still_open: Callable[[int], bool]
) -> Removal:
    """Delete ``entry`` of ``/.trash`` for good (``still_open`` as for ``Namespace.unlink``)."""
    if entry.attr.is_dir:
        return ns.rmdir(tr, trash_ino, entry.name, ROOT_CALLER)
    return ns.unlink(tr, trash_ino, entry.name, ROOT_CALLER, still_open)


def is_expired(entry: TrashEntry, days: float, now_ns: int) -> bool:
    return entry.removed_ns <= now_ns - int(days * _NS_PER_DAY)


def all_entries(read_page: Callable[[bytes | None], tuple[list[TrashEntry], bool]]) -> Iterator[TrashEntry]:
    """Every entry, oldest first, a page per call of ``read_page`` (one transaction each)."""
    after: bytes | None = None
    while True:
        page, complete = read_page(after)
        yield from page
        if complete or not page:
            return
        after = page[-1].name
