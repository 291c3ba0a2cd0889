"""What one transaction attempt read and wrote of the namespace, for a cache in front of the store.

A daemon that answers some requests from memory (fusefs/nscache.py) must learn the attributes and
entries its own transactions read and leave behind.  It sets ``tr.written = Written()`` on each attempt;
the namespace's transaction functions note into it what they read and write (through the functions
here, which cost nothing when nobody asked), and the daemon applies the notes of the attempt that
committed.  What the notes say is exactly the store's state at that transaction's read (for reads) or
commit (for writes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metadata.model import InodeAttr
from metadata.store import Transaction


@dataclass
class Written:
    #: Attributes read, by inode (a read entry that named no inode is not here).
    read_attrs: dict[int, InodeAttr] = field(default_factory=dict)
    #: Entries read: (directory, name) -> the inode it names, or None for a name that is not there.
    read_entries: dict[tuple[int, bytes], int | None] = field(default_factory=dict)
    #: Attributes written, by inode; None for an inode deleted.
    attrs: dict[int, InodeAttr | None] = field(default_factory=dict)
    #: Entries written: (directory, name) -> the inode it names now, or None for a name removed.
    entries: dict[tuple[int, bytes], int | None] = field(default_factory=dict)
    #: Directories created by this transaction: empty, so every name not written in them is absent.
    new_dirs: set[int] = field(default_factory=set)


def read_attr(tr: Transaction, attr: InodeAttr) -> None:
    notes = tr.written
    if notes is not None:
        notes.read_attrs[attr.ino] = attr.copy()


def read_entry(tr: Transaction, parent: int, name: bytes, ino: int | None) -> None:
    notes = tr.written
    if notes is not None:
        notes.read_entries[parent, name] = ino


def wrote_attr(tr: Transaction, attr: InodeAttr) -> None:
    notes = tr.written
    if notes is not None:
        notes.attrs[attr.ino] = attr.copy()


def deleted_inode(tr: Transaction, ino: int) -> None:
    notes = tr.written
    if notes is not None:
        notes.attrs[ino] = None


def wrote_entry(tr: Transaction, parent: int, name: bytes, ino: int | None) -> None:
    notes = tr.written
    if notes is not None:
        notes.entries[parent, name] = ino


def created_dir(tr: Transaction, ino: int) -> None:
    notes = tr.written
    if notes is not None:
        notes.new_dirs.add(ino)
