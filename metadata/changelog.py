"""The change log: one commit-ordered record per metadata mutation, written in the mutation's transaction.

Keys are versionstamped, so records sort in commit order on every backend and a follower can resume
after the last versionstamp it saw.  This is the base for search, provenance and cross-mount cache
invalidation: every record also bumps a head counter (an atomic add, so concurrent writers do not
conflict) that followers watch instead of polling."""

from __future__ import annotations

from dataclasses import dataclass

from metadata.keys import FsKeys
from metadata.model import now_ns, pack, unpack_list
from metadata.printable import printable
from metadata.store import Transaction, Watch

#: A versionstamp before every record's.
NO_RECORD = bytes(10)

_OPTIONAL_INT = (int, type(None))
_OPTIONAL_BYTES = (bytes, type(None))
#: time, op, uid, ino, parent, name, new_parent, new_name, session
_RECORD_TYPES = (int, str, int, int, _OPTIONAL_INT, _OPTIONAL_BYTES, _OPTIONAL_INT, _OPTIONAL_BYTES, bytes)


@dataclass
class LogRecord:
    versionstamp: bytes
    time_ns: int
    op: str
    uid: int
    ino: int
    parent: int | None = None
    name: bytes | None = None
    new_parent: int | None = None
    new_name: bytes | None = None
    #: The mount that made the change (empty for tools).
    session: bytes = b""

    def describe(self) -> str:
        """One line, whatever the names hold (see metadata/printable.py)."""
        where = ""
        if self.parent is not None:
            where = f" {self.parent}/{printable(self.name)}"
        if self.new_parent is not None:
            where += f" -> {self.new_parent}/{printable(self.new_name)}"
        op = printable(self.op)
        return f"{self.versionstamp.hex()} {self.time_ns} {op} ino={self.ino} uid={self.uid}{where}"


def append(
    tr: Transaction,
    keys: FsKeys,
    op: str,
    uid: int,
    ino: int,
    parent: int | None = None,
    name: bytes | None = None,
    new_parent: int | None = None,
    new_name: bytes | None = None,
    session: bytes = b"",
) -> None:
    tr.set_versionstamped_key(
        keys.log_template(), pack([now_ns(), op, uid, ino, parent, name, new_parent, new_name, session])
    )
    tr.add(keys.log_head(), 1)


def last_versionstamp(tr: Transaction, keys: FsKeys) -> bytes | None:
    begin, end = keys.log()
    rows = tr.get_range(begin, end, limit=1, reverse=True, snapshot=True)
    return keys.log_versionstamp(rows[0][0]) if rows else None


def watch_log(tr: Transaction, keys: FsKeys) -> Watch:
    """A watch that fires when a record is appended after this transaction (at its commit)."""
    return tr.watch(keys.log_head())


def read_log(tr: Transaction, fs_name: str, after: bytes | None, limit: int) -> list[LogRecord]:
    """Records committed after the one with versionstamp ``after`` (all when None), oldest first."""
    keys = FsKeys(fs_name)
    begin, end = keys.log()
    if after is not None:
        begin = keys.log_after(after)
    rows = tr.iter_range(begin, end, limit=limit, snapshot=True)
    return [decode_record(keys, key, value) for key, value in rows]


def decode_record(keys: FsKeys, key: bytes, value: bytes) -> LogRecord:
    return LogRecord(keys.log_versionstamp(key), *unpack_list(value, "change-log record", _RECORD_TYPES))


def trim_log(
    tr: Transaction,
    keys: FsKeys,
    older_than_ns: int,
    batch: int = 1000,
    *,
    held_after: bytes | None = None,
    hold_until_ns: int = 0,
) -> int:
    """Remove up to ``batch`` records older than ``older_than_ns``; returns how many were removed.

    Records after versionstamp ``held_after`` (a lagging consumer's cursor) are kept unless older than
    ``hold_until_ns`` too.  The last removed record's versionstamp is recorded (``keys.log_trimmed``),
    so a consumer can tell that records it had not read are gone."""
    begin, end = keys.log()
    last_old: bytes | None = None
    count = 0
    for key, value in tr.iter_range(begin, end, limit=batch, snapshot=True):
        time_ns = unpack_list(value, "change-log record", _RECORD_TYPES)[0]
        if time_ns >= older_than_ns:
            break
        if held_after is not None and time_ns >= hold_until_ns and keys.log_versionstamp(key) > held_after:
            break
        last_old = key
        count += 1
    if last_old is not None:
        tr.clear_range(begin, last_old + b"\0")
        tr.set(keys.log_trimmed(), keys.log_versionstamp(last_old))
    return count


def trimmed_through(tr: Transaction, keys: FsKeys, *, snapshot: bool = True) -> bytes:
    """The versionstamp of the last record trimmed (``NO_RECORD`` if none was)."""
    return tr.get(keys.log_trimmed(), snapshot=snapshot) or NO_RECORD
