"""Named change-log consumers: a cursor per consumer in the store, and trimming held back for them.

A consumer reads the records after its cursor (``read``), processes them, then acknowledges the last one
(``acknowledge``), in separate transactions: delivery is at least once.  A consumer that dies between
processing and acknowledging gets the same records again, with the same ids (their versionstamps), so it
can tell them from new ones: records come in commit order, and an id at or before the last one it
processed is a duplicate.

While a consumer lags, the mounted daemons keep the records it has not acknowledged past the log's
retention, up to ``FsConfig.log_hold_s``; older ones are trimmed all the same.  The store remembers the
last trimmed record (``changelog.trimmed_through``), so a consumer whose cursor is older learns that it
missed records (``Batch.missed_through``) instead of silently skipping them.  A new consumer starts after
the last trimmed record: it has missed nothing, and gets every record still kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from metadata import changelog
from metadata.changelog import NO_RECORD, LogRecord
from metadata.keys import FsKeys
from metadata.model import pack, unpack_list
from metadata.store import CorruptValue, Transaction

#: Consumer names: short, printable, safe in a command line and a file name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: ``status`` counts a consumer's unread records up to this many.
COUNT_MAX = 10_000
_VALUE_TYPES = (bytes, int, int)


class UnknownConsumer(Exception):
    """No consumer of that name (never created, or removed)."""


@dataclass
class Consumer:
    name: str
    #: The versionstamp of the last record it acknowledged (``NO_RECORD`` before any).
    cursor: bytes
    created_ns: int
    acked_ns: int


@dataclass
class Batch:
    """What a consumer reads next."""

    records: list[LogRecord]
    #: Records after the consumer's cursor up to this versionstamp were trimmed before it read them
    #: (None: it missed nothing).  ``records`` follow it.
    missed_through: bytes | None


@dataclass
class Status:
    consumer: Consumer
    #: Records after its cursor, counted up to ``COUNT_MAX``.
    unread: int
    #: When the oldest record it has not read was written (None: it has read everything).
    oldest_unread_ns: int | None
    missed_through: bytes | None


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid consumer name {name!r}: use up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def join(tr: Transaction, keys: FsKeys, name: str, now_ns: int) -> Consumer:
    """Consumer ``name``, created if it does not exist yet (starting after the last trimmed record).

    Reads the trim mark serializably: a trim committing meanwhile makes this run again, so a new
    consumer never starts out having missed records."""
    check_name(name)
    raw = tr.get(keys.log_consumer(name))
    if raw is not None:
        return _decode(name, raw)
    consumer = Consumer(name, changelog.trimmed_through(tr, keys, snapshot=False), now_ns, now_ns)
    tr.set(keys.log_consumer(name), _encode(consumer))
    return consumer


def get(tr: Transaction, keys: FsKeys, name: str, *, snapshot: bool = True) -> Consumer:
    raw = tr.get(keys.log_consumer(name), snapshot=snapshot)
    if raw is None:
        raise UnknownConsumer(f"no log consumer named {name!r} in filesystem '{keys.name}'")
    return _decode(name, raw)


def read(tr: Transaction, keys: FsKeys, name: str, limit: int) -> Batch:
    """Up to ``limit`` records after consumer ``name``'s cursor, oldest first (snapshot reads)."""
    cursor = get(tr, keys, name).cursor
    trimmed = changelog.trimmed_through(tr, keys)
    missed = trimmed if trimmed > cursor else None
    return Batch(changelog.read_log(tr, keys.name, max(cursor, trimmed), limit), missed)


def acknowledge(tr: Transaction, keys: FsKeys, name: str, through: bytes, now_ns: int) -> None:
    """Consumer ``name`` has processed every record up to versionstamp ``through``.

    The cursor never moves back: acknowledging an older record (a duplicate, or a second process
    running the same consumer) changes nothing.  Repeating it is harmless."""
    consumer = get(tr, keys, name, snapshot=False)
    if through > consumer.cursor:
        consumer.cursor, consumer.acked_ns = through, now_ns
        tr.set(keys.log_consumer(name), _encode(consumer))


def remove(tr: Transaction, keys: FsKeys, name: str) -> None:
    get(tr, keys, name, snapshot=False)
    tr.clear(keys.log_consumer(name))


def all_consumers(tr: Transaction, keys: FsKeys) -> list[Consumer]:
    return [
        _decode(keys.log_consumer_name(key), raw)
        for key, raw in tr.iter_range(*keys.log_consumers(), snapshot=True)
    ]


def status(tr: Transaction, keys: FsKeys) -> list[Status]:
    """Every consumer with how far behind it is."""
    trimmed = changelog.trimmed_through(tr, keys)
    found = []
    for consumer in all_consumers(tr, keys):
        begin, end = keys.log()
        begin = keys.log_after(max(consumer.cursor, trimmed))
        rows = tr.get_range(begin, end, limit=COUNT_MAX, snapshot=True)
        oldest = changelog.decode_record(keys, *rows[0]).time_ns if rows else None
        missed = trimmed if trimmed > consumer.cursor else None
        found.append(Status(consumer, len(rows), oldest, missed))
    return found


def trim(
    tr: Transaction, keys: FsKeys, now_ns: int, retention_s: int, hold_s: int, batch: int = 1000
) -> int:
    """Trim records past the retention, except those a consumer has not acknowledged yet, which are kept
    up to ``hold_s``; returns how many were removed (``changelog.trim_log``).

    The cursors are read at snapshot: a consumer acknowledging meanwhile only holds back less than the
    cursor read, and one created meanwhile conflicts on the trim mark (``join``)."""
    cursors = [consumer.cursor for consumer in all_consumers(tr, keys)]
    return changelog.trim_log(
        tr,
        keys,
        now_ns - retention_s * 1_000_000_000,
        batch,
        held_after=min(cursors) if cursors else None,
        hold_until_ns=now_ns - hold_s * 1_000_000_000,
    )


def _encode(consumer: Consumer) -> bytes:
    return pack([consumer.cursor, consumer.created_ns, consumer.acked_ns])


def _decode(name: str, raw: bytes) -> Consumer:
    cursor, created, acked = unpack_list(raw, f"log consumer {name!r}", _VALUE_TYPES)
    if len(cursor) != len(NO_RECORD):
        raise CorruptValue(f"log consumer {name!r}: a cursor of {len(cursor)} bytes")
    return Consumer(name, cursor, created, acked)
