"""Provenance: who opened which file, from when to when, and how many bytes they read and wrote.

Off by default (``FsConfig.provenance``, ``mkfs --provenance``, or ``mount -o provenance`` for one mount).
A mount keeps an ``Access`` per open file handle (fusefs/operations.py) and records it when the handle
is flushed with data (in that flush's own transaction: metadata/content.py) and at its release; the
record's keys are fixed per handle (the open time, the mount's session, the handle number), so a later
record of the same handle replaces the earlier one, and a retried transaction writes the same keys
again.  Each record is kept under the inode (a file's history) and under the user (what a user
touched), both ordered by open time, and a key by the time of its first write orders the trimming:
records are trimmed with the change log, past its retention.
"""

from __future__ import annotations

from dataclasses import dataclass

from metadata.keys import FsKeys
from metadata.model import pack, unpack_list
from metadata.paths import Paths
from metadata.store import Transaction

_VALUE_TYPES = (int, int, int, int, str, int, int, int, bytes, int, int)


@dataclass
class Access:
    """One open-to-close of a file by one process."""

    ino: int
    uid: int
    pid: int
    #: The process's command name (``/proc/PID/comm``), as the kernel gave it when the file was opened.
    command: str
    opened_ns: int
    #: When the record was written: the close, or the last flush with data before it.
    closed_ns: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    #: The mount and its handle number: with ``opened_ns``, what makes the record's keys unique.
    session: bytes = b""
    handle: int = 0
    #: When the record was first written: its trimming key, kept by later records of the handle.
    first_written_ns: int = 0

    def encode(self) -> bytes:
        return pack(
            [
                self.ino,
                self.uid,
                self.pid,
                self.opened_ns,
                self.command,
                self.closed_ns,
                self.bytes_read,
                self.bytes_written,
                self.session,
                self.handle,
                self.first_written_ns,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> Access:
        ino, uid, pid, opened, command, closed, read, written, session, handle, first = unpack_list(
            raw, "provenance record", _VALUE_TYPES
        )
        return cls(ino, uid, pid, command, opened, closed, read, written, session, handle, first)


def record(tr: Transaction, keys: FsKeys, access: Access) -> None:
    """Write (or rewrite) the record of ``access``; ``first_written_ns`` and ``closed_ns`` must be set."""
    value = access.encode()
    where = (access.opened_ns, access.session, access.handle)
    tr.set(keys.access_by_inode(access.ino, *where), value)
    tr.set(keys.access_by_user(access.uid, *where), value)
    tr.set(
        keys.access_by_time(access.first_written_ns, access.session, access.handle),
        pack([access.ino, access.uid, access.opened_ns]),
    )


def of_inode(tr: Transaction, keys: FsKeys, ino: int, limit: int) -> list[Access]:
    """The records of inode ``ino``, oldest open first."""
    rows = tr.iter_range(*keys.accesses_of_inode(ino), limit=limit, snapshot=True)
    return [Access.decode(raw) for _, raw in rows]


def of_user(tr: Transaction, keys: FsKeys, uid: int, since_ns: int, limit: int) -> list[Access]:
    """The records of user ``uid`` of files opened at or after ``since_ns``, oldest open first."""
    rows = tr.iter_range(*keys.accesses_of_user(uid, since_ns), limit=limit, snapshot=True)
    return [Access.decode(raw) for _, raw in rows]


def trim(tr: Transaction, keys: FsKeys, older_than_ns: int, batch: int = 1000) -> int:
    """Remove up to ``batch`` records first written before ``older_than_ns``; returns how many."""
    count = 0
    for key, raw in tr.iter_range(*keys.accesses_by_time(), limit=batch, snapshot=True):
        written, session, handle = keys.access_time_of(key)
        if written >= older_than_ns:
            break
        ino, uid, opened = unpack_list(raw, "provenance time record", (int, int, int))
        tr.clear(keys.access_by_inode(ino, opened, session, handle))
        tr.clear(keys.access_by_user(uid, opened, session, handle))
        tr.clear(key)
        count += 1
    return count


def of_path(tr: Transaction, keys: FsKeys, path: bytes, limit: int) -> tuple[int, list[Access]]:
    """The inode at ``path`` (from the filesystem's root) and its records, in one transaction.
    FSError ENOENT or ENOTDIR."""
    ino = Paths(tr, keys, indexed=False).resolve(path).ino
    return ino, of_inode(tr, keys, ino, limit)
