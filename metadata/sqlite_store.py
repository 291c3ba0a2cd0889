"""The embedded store: FoundationDB's transaction model over one SQLite file.

SQLite gives durable, atomic writes; this module adds FoundationDB's concurrency semantics on top, the
way FoundationDB's resolvers do it: a transaction reads from a SQLite WAL snapshot taken at its *read
version*, buffers its writes, and at commit is checked against the write ranges of every transaction that
committed after that read version.  If one of them wrote something this transaction read (serializably),
the commit fails with ``TransactionConflict`` and the retry loop runs the function again.

Two modes:

- **Sole owner** (the default, and the fast path): one process owns a writable store (an exclusive
  ``flock`` on ``<path>.lock``).  The commit version lives in memory (reserved 256 at a time in the
  file, so a restart never reuses one) and the write ranges of recent commits in a list, both guarded by
  one lock: conflicts between this process's threads are all there are.
- **Shared** (``shared=True``, ``fusefs mount -o shared``): several processes write one file at once, as
  several mounts write one FoundationDB.  Each holds a *shared* ``flock`` on ``<path>.lock``, so sole
  owners and shared processes exclude each other.  Everything the resolver needs is in the file:
  ``store_meta.version`` is written by every commit, so the read version is the version a transaction's
  SQLite snapshot sees, and a commit, under SQLite's write lock (``BEGIN IMMEDIATE``), reads the current
  version, checks its read ranges against the ``commits`` table (version, time, msgpack write ranges) for
  versions above its read version, then writes its data, its own ``commits`` row and version + 1 in the
  same SQLite transaction: versions (hence versionstamps) increase strictly across processes.  Rows older
  than ``MVCC_WINDOW_S`` (5 s, FoundationDB's MVCC window) are trimmed, and ``store_meta.trimmed_through``
  remembers how far: a reading transaction whose read version is below it fails with the retryable
  ``TransactionTooOld``, as FoundationDB's error 1007.  Watches poll their key every ``WATCH_POLL_S``
  (other processes' commits fire nothing here); this process's commits still fire them at once.  The
  store then says ``shared`` and ``blocks_event_loop``, so the daemon takes FoundationDB's path:
  transactions in worker threads, short kernel cache timeouts and change-log invalidation.

Durability: SQLite runs in WAL mode with ``synchronous=NORMAL``.  A commit is written to the WAL file
before ``commit()`` returns, so it survives the daemon being killed (kill -9); it survives a machine
crash once ``sync()`` has fsynced the WAL (the filesystem calls it on fsync(2) and syncfs), or after
SQLite's next checkpoint.

Read-only handles take no lock and can be opened beside either mode.  ``metadata.emulation`` describes
the development aids (retry chaos, latency, an outage switch).
"""

from __future__ import annotations

import bisect
import fcntl
import itertools
import os
import random
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator

import msgpack

from metadata.disk_reserve import DiskReserve
from metadata.emulation import StoreEmulation
from metadata.store import (
    MAX_TRANSACTION_BYTES,
    CorruptValue,
    RetryableError,
    Store,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreUnavailable,
    Transaction,
    TransactionConflict,
    TransactionTooLarge,
    TransactionTooOld,
    Watch,
    check_key,
    check_value,
    decode_int64,
    encode_int64,
)

_RANGE_BATCH_ROWS = 1000
#: Keys per statement of ``get_many`` (each batch length is one cached statement; SQLite allows 32 766).
_GET_MANY_BATCH = 256
#: Below this many keys ``get_many`` reads each with its own statement: an IN list costs more for a few
#: keys (measured: 2 keys 17 µs one by one, 28 µs in one statement; 8 keys 106 vs 98 µs).
_GET_MANY_STATEMENT_MIN = 16
#: A sole owner reserves commit versions this many at a time: it persists "no version above V was used"
#: before using one above V, so a restart (even after kill -9) never hands out a version again.
_VERSION_RESERVE = 256
#: Versions skipped when a writable handle opens: stores written before versions were reserved ahead
#: persisted them only every 256 commits and may have used up to 511 past the persisted value.
_VERSION_SKIP_ON_OPEN = 2 * _VERSION_RESERVE
_MMAP_BYTES = 1 << 30
#: Shared mode keeps the write ranges of the commits of this many seconds (FoundationDB's MVCC window).
MVCC_WINDOW_S = 5.0
#: How often a watch in shared mode looks at its key's value.
WATCH_POLL_S = 0.03
#: How long a statement waits for another process's SQLite lock before the attempt is retried.
_BUSY_TIMEOUT_S = 5.0
#: How long a commit takes to fail while the emulated fault is on (FoundationDB's look during recovery).
_FAULT_PAUSE_S = 0.1
#: While the disk reserve is missing, every this many commits look whether the disk has room to make it
#: again (deletions look at once).
_RESERVE_CHECK_COMMITS = 256
NO_EMULATION = StoreEmulation()
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commits (version INTEGER PRIMARY KEY, t REAL NOT NULL, ranges BLOB NOT NULL);
"""

KeyRange = tuple[bytes, bytes]


def _key_after(key: bytes) -> bytes:
    return key + b"\0"


def _overlaps(reads: list[KeyRange], writes: list[KeyRange]) -> bool:
    return any(rb < we and wb < re for rb, re in reads for wb, we in writes)


class _SqliteWatch(Watch):
    def __init__(self, store: SqliteStore, key: bytes) -> None:
        self._store = store
        self.key = key
        self.value: bytes | None = None
        self._event = threading.Event()

    def fire(self) -> None:
        self._event.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        if not self._store.shared_mode:
            return self._event.wait(timeout_s)
        # Other processes' commits fire nothing here: poll the key's value (our own commits still set
        # the event at once).
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            step = WATCH_POLL_S if deadline is None else min(WATCH_POLL_S, deadline - time.monotonic())
            if self._event.wait(max(step, 0.0)):
                return True
            if self._store._changed(self):
                self._store._unregister_watch(self)
                self.fire()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def cancel(self) -> None:
        self._store._unregister_watch(self)
        self._event.set()


class SqliteTransaction(Transaction):
    commit_outcome_certain = True  # one SQLite transaction in one process: applied, or rolled back

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._reader: sqlite3.Connection | None = None
        self.read_version: int | None = None
        self._reads: list[KeyRange] = []
        # Buffered mutations.  Invariants: keys in _atomics are in neither _writes nor a cleared range,
        # and a clear_range removes buffered writes inside it, so applying clears, then writes, then
        # atomics, then versionstamped keys reproduces the order the caller made them in.
        self._writes: dict[bytes, bytes | None] = {}
        self._cleared: list[KeyRange] = []
        self._atomics: dict[bytes, list[tuple[str, int]]] = {}
        self._stamped: list[tuple[bytes, bytes]] = []
        self._watches: list[_SqliteWatch] = []
        self._size_bytes = 0
        self._done = False
        self._in_read_round = False  # get_many: one emulated read round for all its keys
        # Keys read already cost no emulated round again: FoundationDB's client answers them from the
        # transaction's own cache.
        self._emulated_keys: set[bytes] = set()

    # -- reads --------------------------------------------------------------------------------------
    def _snapshot(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader, self.read_version = self._store._start_read(self)
        return self._reader

    def _in_cleared(self, key: bytes) -> bool:
        return bool(self._cleared) and any(b <= key < e for b, e in self._cleared)

    def _db_get(self, key: bytes) -> bytes | None:
        row = self._snapshot().execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def get(self, key: bytes, *, snapshot: bool = False) -> bytes | None:
        check_key(key)
        return self._get(key, snapshot, None)

    def _get(self, key: bytes, snapshot: bool, stored: dict[bytes, bytes] | None) -> bytes | None:
        """``stored``: the stored values read beforehand (``get_many``), else the key is read now."""
        if key in self._writes:
            return self._writes[key]
        if self._in_cleared(key):
            return None
        if self._store.read_delay_s and not self._in_read_round and key not in self._emulated_keys:
            self._store._emulate_read_round()
            self._emulated_keys.add(key)
        value = self._db_get(key) if stored is None else stored.get(key)
        if not snapshot:
            self._reads.append((key, _key_after(key)))
        if key in self._atomics:
            value = _apply_atomics(value, self._atomics[key])
        return value

    def get_many(self, keys: list[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        """As ``get`` for each key.  From ``_GET_MANY_STATEMENT_MIN`` keys on, those this transaction has
        not written are read in statements of up to ``_GET_MANY_BATCH`` keys (a listing's attributes: one
        statement rather than one per entry); fewer are read one by one, which is faster for them."""
        for key in keys:
            check_key(key)
        if self._store.read_delay_s and not self._emulated_keys.issuperset(keys):
            self._store._emulate_read_round()
            self._emulated_keys.update(keys)
        stored = None
        if len(keys) >= _GET_MANY_STATEMENT_MIN:
            unwritten = [key for key in keys if key not in self._writes and not self._in_cleared(key)]
            stored = self._db_get_many(unwritten)
        self._in_read_round = True  # the round was emulated above, once
        try:
            return [self._get(key, snapshot, stored) for key in keys]
        finally:
            self._in_read_round = False

    def get_ranges(
        self, ranges: list[tuple[bytes, bytes]], *, snapshot: bool = False
    ) -> list[list[tuple[bytes, bytes]]]:
        """As ``get_range`` for each range, in one emulated read round (as FoundationDB's client sends
        the requests at once); a range longer than a reply still costs a round per further batch."""
        if self._store.read_delay_s and ranges:
            self._store._emulate_read_round()
        self._in_read_round = True
        try:
            return [self.get_range(begin, end, snapshot=snapshot) for begin, end in ranges]
        finally:
            self._in_read_round = False

    def _db_get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        conn = self._snapshot()
        found: dict[bytes, bytes] = {}
        for start in range(0, len(keys), _GET_MANY_BATCH):
            batch = keys[start : start + _GET_MANY_BATCH]
            query = f"SELECT k, v FROM kv WHERE k IN ({', '.join('?' * len(batch))})"
            found.update((bytes(key), bytes(value)) for key, value in conn.execute(query, batch))
        return found

    def _db_rows(self, begin: bytes, end: bytes, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
        conn = self._snapshot()
        if reverse:
            query = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k DESC LIMIT ?"
        else:
            query = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?"
        low, high = begin, end
        first = True
        while True:
            if self._store.read_delay_s and not (first and self._in_read_round):
                self._store._emulate_read_round()
            first = False
            rows = conn.execute(query, (low, high, _RANGE_BATCH_ROWS)).fetchall()
            for key, value in rows:
                yield bytes(key), bytes(value)
            if len(rows) < _RANGE_BATCH_ROWS:
                return
            last = bytes(rows[-1][0])
            if reverse:
                high = last
            else:
                low = _key_after(last)

    def _buffered_rows(self, begin: bytes, end: bytes, reverse: bool) -> list[tuple[bytes, bytes | None]]:
        """Buffered keys in range: (key, value) for sets and atomics (resolved lazily), None for clears."""
        keys = sorted(k for k in itertools.chain(self._writes, self._atomics) if begin <= k < end)
        if reverse:
            keys.reverse()
        return [(k, self._writes.get(k)) for k in keys]

    def iter_range(
        self,
        begin: bytes,
        end: bytes,
        *,
        limit: int = 0,
        reverse: bool = False,
        snapshot: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        check_key(begin)
        check_key(end)
        if begin >= end:
            return
        buffered = self._buffered_rows(begin, end, reverse)
        db_rows = (
            (k, v)
            for k, v in self._db_rows(begin, end, reverse)
            if k not in self._writes and k not in self._atomics and not self._in_cleared(k)
        )
        returned = 0
        last_key: bytes | None = None
        try:
            for key, value in _merge(db_rows, buffered, reverse):
                if key in self._atomics:
                    value = _apply_atomics(self._db_get(key), self._atomics[key])
                    if value is None:
                        continue
                elif value is None:
                    continue
                yield key, value
                returned += 1
                last_key = key
                if limit and returned >= limit:
                    return
            last_key = None  # exhausted: the whole range was read
        finally:
            if not snapshot:
                self._reads.append(_read_extent(begin, end, last_key, reverse))

    # -- writes -------------------------------------------------------------------------------------
    def _account(self, nbytes: int) -> None:
        self._size_bytes += nbytes

    def set(self, key: bytes, value: bytes) -> None:
        check_key(key)
        check_value(value)
        self._atomics.pop(key, None)
        self._writes[key] = bytes(value)
        self._account(len(key) + len(value))

    def clear(self, key: bytes) -> None:
        check_key(key)
        self._atomics.pop(key, None)
        self._writes[key] = None
        self._account(len(key))

    def clear_range(self, begin: bytes, end: bytes) -> None:
        check_key(begin)
        check_key(end)
        if begin >= end:
            return
        for key in [k for k in itertools.chain(self._writes, self._atomics) if begin <= k < end]:
            self._writes.pop(key, None)
            self._atomics.pop(key, None)
        self._cleared.append((begin, end))
        self._account(len(begin) + len(end))

    def _atomic(self, key: bytes, op: str, operand: int) -> None:
        check_key(key)
        self._account(len(key) + 8)
        if key in self._writes or self._in_cleared(key):
            self._writes[key] = _apply_atomics(self._writes.get(key), [(op, operand)])
        else:
            self._atomics.setdefault(key, []).append((op, operand))

    def add(self, key: bytes, delta: int) -> None:
        self._atomic(key, "add", delta)

    def max(self, key: bytes, value: int) -> None:
        self._atomic(key, "max", value)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        check_key(key[:-4])
        check_value(value)
        (offset,) = struct.unpack("<I", key[-4:])
        if offset + 10 > len(key) - 4:
            raise StoreError("versionstamp offset lies outside the key")
        self._stamped.append((bytes(key), bytes(value)))
        self._account(len(key) + len(value))

    def add_read_conflict_key(self, key: bytes) -> None:
        self._reads.append((key, _key_after(key)))

    def watch(self, key: bytes) -> Watch:
        check_key(key)
        watch = _SqliteWatch(self._store, key)
        self._watches.append(watch)
        return watch

    # -- end ----------------------------------------------------------------------------------------
    def has_writes(self) -> bool:
        return bool(self._writes or self._cleared or self._atomics or self._stamped)

    def commit(self) -> None:
        if self._done:
            raise StoreError("transaction already committed or cancelled")
        if self._size_bytes > MAX_TRANSACTION_BYTES:
            raise TransactionTooLarge(self._size_bytes)
        try:
            self._store._commit(self)
        finally:
            self._finish()

    def cancel(self) -> None:
        if not self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        self._release_reader(self._store._end_read)

    def _release_reader(self, end_read: Callable[[SqliteTransaction, sqlite3.Connection], None]) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            end_read(self, reader)


def _read_extent(begin: bytes, end: bytes, last_key: bytes | None, reverse: bool) -> KeyRange:
    """The key range a limited range read depended on (FoundationDB's rule: up to the last key returned)."""
    if last_key is None:
        return (begin, end)
    return (last_key, end) if reverse else (begin, _key_after(last_key))


def _merge(
    db_rows: Iterator[tuple[bytes, bytes]], buffered: list[tuple[bytes, bytes | None]], reverse: bool
) -> Iterator[tuple[bytes, bytes | None]]:
    """Merge two key-sorted streams with disjoint keys."""
    pending = iter(buffered)
    next_buffered = next(pending, None)
    for key, value in db_rows:
        while next_buffered is not None and (
            (next_buffered[0] > key) if reverse else (next_buffered[0] < key)
        ):
            yield next_buffered
            next_buffered = next(pending, None)
        yield key, value
    while next_buffered is not None:
        yield next_buffered
        next_buffered = next(pending, None)


def _apply_atomics(value: bytes | None, ops: list[tuple[str, int]]) -> bytes:
    current = decode_int64(value)
    for op, operand in ops:
        if op == "add":
            current = (current + operand + 2**63) % 2**64 - 2**63  # wraps like FoundationDB's add
        else:
            current = max(current % 2**64, operand % 2**64)
            current = current - 2**64 if current >= 2**63 else current
    return encode_int64(current)


class SqliteStore(Store):
    """A FoundationDB-semantics store in one SQLite file (see the module docstring)."""

    blocks_event_loop = False
    shared = False  # one process owns a writable store (see the owner lock)

    def __init__(
        self,
        path: str,
        *,
        read_only: bool = False,
        exclusive: bool = True,
        shared: bool = False,
        create: bool = True,
        emulation: StoreEmulation = NO_EMULATION,
        chaos_seed: int | None = None,
        mvcc_window_s: float = MVCC_WINDOW_S,
    ) -> None:
        self.path = os.path.abspath(path)
        self.url = f"sqlite://{self.path}"
        self.read_only = read_only
        #: Several read-write processes at once (see the module docstring).  A read-only handle is a
        #: shared reader either way.
        self.shared_mode = shared and not read_only
        self.shared = read_only or self.shared_mode
        # Shared mode takes FoundationDB's path through the daemon: transactions in worker threads.  So
        # does any emulated delay: a sleeping transaction must not hold up the event loop.
        self.blocks_event_loop = self.shared_mode or emulation.slows_calls
        self.read_delay_s = emulation.read_delay_s
        self._commit_delay_s = emulation.commit_delay_s
        self._fault_file = emulation.fault_file
        self._chaos_rate = emulation.chaos_conflict_rate
        self._chaos = random.Random(chaos_seed)
        self._mvcc_window_s = mvcc_window_s
        #: Emulated delays taken so far (tests count them rather than time them).
        self.emulated_read_rounds = 0
        self.emulated_commits = 0
        self._lock_fd: int | None = None
        if (read_only or not create) and not os.path.exists(self.path):
            # Checked before the lock file is made: a mistyped path must leave nothing behind.
            raise StoreUnavailable(f"no store at {self.path}: create one with fusefs mkfs")
        if not read_only and exclusive:
            self._lock_fd = _take_lock(self.path, shared=self.shared_mode)
        self._poll_conn: sqlite3.Connection | None = None
        self._poll_lock = threading.Lock()
        self._closed = False
        try:
            self._writer = self._connect()
            self._version = self._skip_ahead()
            self._reserved = self._version
        except sqlite3.DatabaseError as error:
            self.close()
            raise StoreUnavailable(f"{self.path}: not a usable SQLite store ({error})") from error
        self._commit_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        # Transactions read and commit on the writer connection whenever it is free: SQLite drops a
        # connection's page cache (and memory map) whenever another connection has committed since
        # its last transaction, so one connection doing everything keeps its cache warm.  Readers
        # from the pool serve transactions that overlap (threads).
        self._writer_reading = False
        self._active_reads: dict[int, int] = {}  # id(transaction) -> read version
        self._history: list[tuple[int, list[KeyRange]]] = []  # (commit version, write ranges)
        self._watches: dict[bytes, list[_SqliteWatch]] = {}
        # Deletions may spend it on a full disk (metadata/disk_reserve.py); a writable handle makes it.
        self._reserve = None if read_only else DiskReserve(self.path + ".reserve")
        self._reserve_missing = self._reserve is not None and not self._reserve.ensure()
        self._commits_since_reserve_check = 0

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            if not os.path.isdir(os.path.dirname(self.path)):
                raise StoreUnavailable(f"{self.path}: directory {os.path.dirname(self.path)} does not exist")
            _create_private(self.path)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
            )
            # Only a new store takes it (before its first table): pages freed by deletions can then be
            # given back to a full disk (``_give_space_back``).  Costs commits nothing measurable.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        conn.execute("PRAGMA synchronous=NORMAL")
        # Pages are read through a memory map instead of a pread each.  Mostly for cold reads: a page
        # fault reads the pages around it too (1 000 cold 64 KiB files read back: 1 065 -> 2 957/s).
        conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        return conn

    def _skip_ahead(self) -> int:
        """The commit version to continue from: versionstamps must never repeat or go backwards.

        A read-only handle reads it; a sole owner starts past it and reserves on its first commit; a
        shared process persists the skip at once, since the others take their versions from the file."""
        version = _stored_version(self._writer)
        if self.read_only:
            return version
        version += _VERSION_SKIP_ON_OPEN
        if self.shared_mode:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = max(version, _stored_version(conn))
                _persist_version(conn, version)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return version

    # -- emulation ----------------------------------------------------------------------------------
    def _emulate_read_round(self) -> None:
        self.emulated_read_rounds += 1
        time.sleep(self.read_delay_s)

    def _check_fault(self) -> None:
        assert self._fault_file is not None
        if os.path.exists(self._fault_file):
            time.sleep(_FAULT_PAUSE_S)
            raise RetryableError(f"{self.path}: emulated store recovery ({self._fault_file} exists)")

    # -- transactions -------------------------------------------------------------------------------
    def begin(self) -> SqliteTransaction:
        return SqliteTransaction(self)

    def _free_connection(self) -> sqlite3.Connection:
        """A connection in no transaction (under the commit lock): the writer if it is free."""
        if not self._writer_reading:
            return self._writer
        return self._idle_readers.pop() if self._idle_readers else self._connect()

    def _put_back(self, conn: sqlite3.Connection) -> None:
        if conn is not self._writer:
            self._idle_readers.append(conn)

    def _start_read(self, tr: SqliteTransaction) -> tuple[sqlite3.Connection, int]:
        with self._commit_lock:
            conn = self._free_connection()
            conn.execute("BEGIN")
            try:
                if self.shared_mode:
                    # The snapshot starts with this read, so the version it sees is the read version.
                    version = _stored_version(conn)
                else:
                    # Taking the snapshot under the commit lock ties it to exactly this read version.
                    conn.execute("SELECT 1 FROM store_meta LIMIT 1").fetchall()
                    version = self._version
            except sqlite3.OperationalError as error:  # another process holds SQLite's locks too long
                conn.execute("ROLLBACK")
                self._put_back(conn)
                raise self._sqlite_error(error, "read") from error
            if conn is self._writer:
                self._writer_reading = True
            self._active_reads[id(tr)] = version
            return conn, version

    def _end_read(self, tr: SqliteTransaction, conn: sqlite3.Connection) -> None:
        with self._commit_lock:
            self._end_read_locked(tr, conn)

    def _end_read_locked(self, tr: SqliteTransaction, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")
        del self._active_reads[id(tr)]
        if conn is self._writer:
            self._writer_reading = False
        self._put_back(conn)
        self._trim_history()

    def _trim_history(self) -> None:
        if not self._active_reads:
            self._history.clear()
            return
        oldest = min(self._active_reads.values())
        cut = bisect.bisect_right([version for version, _ in self._history], oldest)
        del self._history[:cut]

    def _commit(self, tr: SqliteTransaction) -> None:
        if self._fault_file is not None:
            self._check_fault()
        if not tr.has_writes():
            # A read-only transaction commits trivially, as in FoundationDB, but its watches still
            # become active (FoundationDB's get_and_watch is a read-only transaction).
            if tr._watches:
                with self._commit_lock:
                    conn = self._free_connection()
                    for watch in tr._watches:
                        self._register_watch(conn, watch)
                    self._put_back(conn)
            return
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only")
        if self._commit_delay_s:
            self.emulated_commits += 1
            time.sleep(self._commit_delay_s)
        with self._commit_lock:
            if self._chaos_rate and self._chaos.random() < self._chaos_rate:
                raise TransactionConflict("injected conflict (retry chaos)")
            if tr.read_version is not None and not self.shared_mode:
                for version, writes in self._history:
                    if version > tr.read_version and _overlaps(tr._reads, writes):
                        raise TransactionConflict("a concurrent transaction wrote what this one read")
            # End the read snapshot before writing: a snapshot held across the commit would keep SQLite
            # from ever resetting the WAL, which then grows without bound and makes checkpoints slow.
            tr._release_reader(self._end_read_locked)
            conn = self._free_connection()
            try:
                try:
                    version, write_ranges = self._apply(conn, tr)
                except StoreFull:
                    if not tr.frees_space:
                        raise  # only deletions spend the reserve: it is there for the rm that frees space
                    version, write_ranges = self._apply_with_reserve(conn, tr)
                self._version = version
                if self._active_reads and not self.shared_mode:
                    self._history.append((version, write_ranges))
                self._fire_watches(conn, write_ranges)
                for watch in tr._watches:
                    self._register_watch(conn, watch)
                if self._reserve_missing:
                    self._after_commit_without_reserve(conn, tr)
            finally:
                self._put_back(conn)

    def _apply(self, conn: sqlite3.Connection, tr: SqliteTransaction) -> tuple[int, list[KeyRange]]:
        """Write a transaction's mutations in one SQLite transaction (few statements: each costs µs);
        its commit version and write ranges."""
        deletes = [(key,) for key, value in tr._writes.items() if value is None]
        upserts = [(key, value) for key, value in tr._writes.items() if value is not None]
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = self._resolve_shared(conn, tr) if self.shared_mode else self._version + 1
            stamp = struct.pack(">QH", version, 0)
            for template, value in tr._stamped:
                (offset,) = struct.unpack("<I", template[-4:])
                upserts.append((template[:offset] + stamp + template[offset + 10 : -4], value))
            for begin, end in tr._cleared:
                conn.execute("DELETE FROM kv WHERE k >= ? AND k < ?", (begin, end))
            for key, ops in tr._atomics.items():
                row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
                upserts.append((key, _apply_atomics(None if row is None else bytes(row[0]), ops)))
            if deletes:
                conn.executemany("DELETE FROM kv WHERE k = ?", deletes)
            conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", upserts)
            writes = list(tr._cleared)
            writes.extend((key, _key_after(key)) for (key,) in deletes)
            writes.extend((key, _key_after(key)) for key, _ in upserts)
            if self.shared_mode:
                self._record_commit(conn, version, writes)
            elif version > self._reserved:
                reserved = version + _VERSION_RESERVE
                _persist_version(conn, reserved)
            conn.execute("COMMIT")
        except RetryableError:
            conn.execute("ROLLBACK")
            raise
        except sqlite3.Error as error:
            # SQLite rolls some failures back itself (SQLITE_FULL may): roll back only what is left.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._sqlite_error(error, "commit") from error
        if not self.shared_mode and version > self._reserved:
            self._reserved = reserved
        return version, writes

    def _apply_with_reserve(
        self, conn: sqlite3.Connection, tr: SqliteTransaction
    ) -> tuple[int, list[KeyRange]]:
        """A deletion that failed for want of disk space, once more after giving the disk the reserve and
        the WAL back (a checkpoint needs room too: the reserve goes first)."""
        assert self._reserve is not None
        self._reserve.release()
        self._reserve_missing = True
        self._checkpoint(conn)
        return self._apply(conn, tr)

    def _give_space_back(self, conn: sqlite3.Connection) -> None:
        """Return the pages deletions freed to the disk: shrink the database file (stores made before
        auto_vacuum have nothing to shrink: their free pages only serve their own later writes), then
        the WAL."""
        try:
            conn.executescript("PRAGMA incremental_vacuum")  # execute() would free one page
        except sqlite3.Error:
            pass  # no room even for that, or busy: the next deletion tries again
        self._checkpoint(conn)

    def _after_commit_without_reserve(self, conn: sqlite3.Connection, tr: SqliteTransaction) -> None:
        """While the reserve is missing: after a deletion, shrink the WAL so the space it freed reaches
        the disk, and make the reserve again as soon as the disk has room (otherwise look every
        ``_RESERVE_CHECK_COMMITS`` commits: statvfs is cheap, but not free)."""
        assert self._reserve is not None
        self._commits_since_reserve_check += 1
        if tr.frees_space:
            self._give_space_back(conn)
        elif self._commits_since_reserve_check < _RESERVE_CHECK_COMMITS:
            return
        self._commits_since_reserve_check = 0
        self._reserve_missing = not self._reserve.ensure()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database and truncate it, if no reader needs it: never waits (a reader
        holding a snapshot keeps the WAL; the next deletion tries again: waiting, for a reader of this
        process, would wait for the commit lock held here), never fails."""
        try:
            conn.execute("PRAGMA busy_timeout=0")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error:
            pass  # busy, or no room to grow the database file: the WAL stays as it is

    def _resolve_shared(self, conn: sqlite3.Connection, tr: SqliteTransaction) -> int:
        """FoundationDB's resolver across processes, under SQLite's write lock: the commit version, or
        ``TransactionConflict`` if a commit after the read version wrote what ``tr`` read."""
        version = _stored_version(conn)
        if tr._reads and tr.read_version is not None:
            if tr.read_version < _stored_value(conn, "trimmed_through"):
                raise TransactionTooOld(
                    f"{self.path}: the transaction's read version is older than the conflict history "
                    f"kept ({self._mvcc_window_s:g} s)"
                )
            for (encoded,) in conn.execute(
                "SELECT ranges FROM commits WHERE version > ?", (tr.read_version,)
            ):
                if _overlaps(tr._reads, msgpack.unpackb(encoded)):
                    raise TransactionConflict("a concurrent transaction wrote what this one read")
        return version + 1

    def _record_commit(self, conn: sqlite3.Connection, version: int, writes: list[KeyRange]) -> None:
        """Persist the version and this commit's write ranges for other processes' resolvers, and drop
        the records older than the MVCC window (remembering how far, for ``TransactionTooOld``)."""
        now = time.time()
        conn.execute(
            "INSERT INTO commits (version, t, ranges) VALUES (?, ?, ?)", (version, now, msgpack.packb(writes))
        )
        _persist_version(conn, version)
        cutoff = now - self._mvcc_window_s
        (oldest,) = conn.execute("SELECT t FROM commits ORDER BY version LIMIT 1").fetchone()
        if oldest < cutoff:
            (last,) = conn.execute("SELECT max(version) FROM commits WHERE t < ?", (cutoff,)).fetchone()
            conn.execute("DELETE FROM commits WHERE version <= ?", (last,))
            _store_value(conn, "trimmed_through", last)

    def _sqlite_error(self, error: sqlite3.Error, doing: str) -> StoreError:
        text = str(error)
        if isinstance(error, sqlite3.DatabaseError) and "malformed" in text:
            return CorruptValue(f"{self.path}: {text}")
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return StoreFull(f"{self.path}: {doing} failed: the disk holding the store is full")
        if isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            # Another process held SQLite's lock past the busy timeout: the attempt may simply be run again.
            return RetryableError(f"{self.path}: {doing} failed: {text}")
        return StoreError(f"{self.path}: {doing} failed: {text}")

    # -- watches ------------------------------------------------------------------------------------
    def _register_watch(self, conn: sqlite3.Connection, watch: _SqliteWatch) -> None:
        row = conn.execute("SELECT v FROM kv WHERE k = ?", (watch.key,)).fetchone()
        watch.value = None if row is None else bytes(row[0])
        self._watches.setdefault(watch.key, []).append(watch)

    def _unregister_watch(self, watch: _SqliteWatch) -> None:
        with self._commit_lock:
            watchers = self._watches.get(watch.key, [])
            if watch in watchers:
                watchers.remove(watch)

    def _changed(self, watch: _SqliteWatch) -> bool:
        """Whether the watched key's latest committed value differs from the watch's (shared mode polls
        this: other processes' commits fire nothing here)."""
        with self._poll_lock:
            if self._closed:
                return False  # a watch abandoned at unmount may poll once more: the store is gone
            if self._poll_conn is None:
                self._poll_conn = self._connect()
            try:
                row = self._poll_conn.execute("SELECT v FROM kv WHERE k = ?", (watch.key,)).fetchone()
            except sqlite3.OperationalError:  # busy: no answer this time, the next poll looks again
                return False
        return (None if row is None else bytes(row[0])) != watch.value

    def _fire_watches(self, conn: sqlite3.Connection, write_ranges: list[KeyRange]) -> None:
        if not self._watches:
            return
        for key in [k for k in self._watches if any(b <= k < e for b, e in write_ranges)]:
            row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            value = None if row is None else bytes(row[0])
            remaining = []
            for watch in self._watches[key]:
                if watch.value != value:
                    watch.fire()
                else:
                    remaining.append(watch)
            if remaining:
                self._watches[key] = remaining
            else:
                del self._watches[key]

    # -- life cycle ---------------------------------------------------------------------------------
    def sync(self) -> None:
        # With synchronous=NORMAL a commit is in the WAL file but not yet fsynced: fsync it.
        wal_path = self.path + "-wal"
        try:
            fd = os.open(wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL: everything is checkpointed (and fsynced) into the database file
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        for conn in getattr(self, "_idle_readers", []):
            conn.close()
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()
        # Under the poll lock: closing a connection another thread is using crashes the process.
        with self._poll_lock:
            self._closed = True
            if self._poll_conn is not None:
                self._poll_conn.close()
            self._poll_conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _create_private(path: str) -> None:
    """Create the database file 0600 if it is missing: SQLite gives its -wal and -shm files the database
    file's mode, and the store holds every file name and small file's contents."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _stored_value(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM store_meta WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _store_value(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute("INSERT OR REPLACE INTO store_meta (name, value) VALUES (?, ?)", (name, value))


def _stored_version(conn: sqlite3.Connection) -> int:
    return _stored_value(conn, "version")


def _persist_version(conn: sqlite3.Connection, version: int) -> None:
    _store_value(conn, "version", version)


def _take_lock(path: str, *, shared: bool) -> int:
    """Sole owners exclude everyone (``LOCK_EX``); shared-mode processes exclude only sole owners
    (``LOCK_SH``).  A sole owner writes its pid into the lock file for the refusal message."""
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise StoreUnavailable(f"cannot open {lock_path}: {error.strerror}") from error
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        message = _refusal(fd, path, shared)
        os.close(fd)
        raise StoreLocked(message) from None
    if not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _refusal(fd: int, path: str, shared: bool) -> str:
    if not shared:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only if the holders are shared
        except BlockingIOError:
            pass
        else:
            return (
                f"store {path} is mounted in shared mode by other processes: mount it with -o shared too, "
                "or unmount them"
            )
    owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    message = f"store {path} is in use by another process (pid {owner})"
    if shared:
        message += " that owns it alone: unmount it, or mount both with -o shared"
    return message
