"""The FoundationDB backend: a thin adapter from the store interface to the official ``fdb`` bindings.

Every call here is a documented binding call (``bindings/python/fdb/impl.py``, API version 730): reads
return futures that block the calling thread in ``wait()``/``.value``, mutations are buffered client-side
until ``commit()``, and ``Transaction.on_error`` implements FoundationDB's own backoff and retry policy.
Errors come out of the bindings as ``fdb.FDBError`` with a numeric code; ``_store_error`` maps each code
onto the interface's exceptions so that filesystem code never sees an FDB type.

Durability: a FoundationDB commit is durable when ``commit().wait()`` returns (the transaction logs have
fsynced it on every replica), so ``sync()`` has nothing left to do.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from metadata.store import (
    DEFAULT_RETRY_LIMIT,
    DEFAULT_TIMEOUT_S,
    MAX_TRANSACTION_BYTES,
    CommitUnknownResult,
    KeyTooLarge,
    Operation,
    RetryableError,
    RetryLimitReached,
    Store,
    StoreError,
    StoreUnavailable,
    Transaction,
    TransactionConflict,
    TransactionTimedOut,
    TransactionTooLarge,
    ValueTooLarge,
    Watch,
    check_key,
    check_value,
    encode_int64,
    new_operation_id,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

API_VERSION = 730
#: Default per-transaction timeout and retry limit set on the database, so that a transaction started
#: with ``begin()`` against an unreachable or unavailable cluster ends in an error instead of hanging.
TRANSACTION_TIMEOUT_MS = 5_000
TRANSACTION_RETRY_LIMIT = DEFAULT_RETRY_LIMIT
#: How long opening the store waits for one read before declaring the cluster unreachable.
CONNECT_TIMEOUT_MS = 5_000

# FoundationDB error codes (flow/include/flow/error_definitions.h, documented in api-error-codes).
NOT_COMMITTED = 1020
COMMIT_UNKNOWN_RESULT = 1021
TRANSACTION_TIMED_OUT = 1031
WATCH_CANCELLED = 1029  # the storage server dropped the watch (its watch limit): the key may have changed
TRANSACTION_TOO_LARGE = 2101
KEY_TOO_LARGE = 2102
VALUE_TOO_LARGE = 2103

_INT_MAX = 2**31 - 1  # the largest timeout and retry limit the transaction options accept
_VERSIONSTAMP_OFFSET_BYTES = 4  # the little-endian offset suffix of a versionstamped key (API >= 520)

_api_lock = threading.Lock()


def load_fdb_api() -> Any:
    """Import the bindings and select API version 730 (once per process); the ``fdb`` module.

    ``fdb.api_version`` loads libfdb_c; without it (or without the bindings) this raises
    ``StoreUnavailable`` with a one-line explanation."""
    try:
        import fdb
    except ImportError as error:
        raise StoreUnavailable(
            f"the FoundationDB Python bindings are not installed (pip install foundationdb): {error}"
        ) from error
    with _api_lock:
        if fdb.is_api_version_selected():
            selected = fdb.get_api_version()
            if selected != API_VERSION:
                raise StoreUnavailable(
                    f"this process already selected FoundationDB API version {selected}; "
                    f"the store needs {API_VERSION} (an API version can be selected only once per process)"
                )
            return fdb
        try:
            fdb.api_version(API_VERSION)
        except Exception as error:  # a bare Exception when libfdb_c is missing, RuntimeError if too old
            raise StoreUnavailable(
                "FoundationDB needs libfdb_c, the FoundationDB client library: install the "
                f"foundationdb-clients package, version {fdb.__version__} or newer to match the Python "
                f"bindings, from https://github.com/apple/foundationdb/releases ({error})"
            ) from error
    return fdb


def _store_error(error: Any, fdb: Any) -> StoreError:
    """The interface exception for an ``fdb.FDBError``; it keeps the code as ``fdb_code`` for on_error."""
    code = error.code
    text = f"FoundationDB error {code}: {error.description}"
    exc: StoreError
    if code == NOT_COMMITTED:
        exc = TransactionConflict(text)
    elif fdb.predicates.is_maybe_committed(error):  # commit_unknown_result, cluster_version_changed
        exc = CommitUnknownResult(text)
    elif code == TRANSACTION_TIMED_OUT:
        exc = TransactionTimedOut(text)
    elif code in (TRANSACTION_TOO_LARGE, KEY_TOO_LARGE, VALUE_TOO_LARGE):
        exc = {
            TRANSACTION_TOO_LARGE: TransactionTooLarge,
            KEY_TOO_LARGE: KeyTooLarge,
            VALUE_TOO_LARGE: ValueTooLarge,
        }[code](0)
        exc.args = (text,)  # the binding does not say how large: keep FoundationDB's own message
    elif fdb.predicates.is_retryable(error):  # transaction_too_old, future_version, process_behind, ...
        exc = RetryableError(text)
    else:  # transaction_cancelled, operation_cancelled, used_during_commit, inverted_range, ...
        exc = StoreError(text)
    exc.fdb_code = code  # type: ignore[attr-defined]
    return exc


def _wrap_int64(value: int) -> bytes:
    """``value`` as FoundationDB's 8-byte little-endian atomic operand (two's complement, wrapping)."""
    return encode_int64((value + 2**63) % 2**64 - 2**63)


class FdbWatch(Watch):
    """A watch future.  Its one ``on_ready`` callback runs on FDB's network thread and sets an event, so
    ``wait`` can time out (``Future.wait`` cannot)."""

    def __init__(self, future: Any, fdb: Any) -> None:
        self._future = future
        self._fdb = fdb
        self._ready = threading.Event()
        self._cancelled = False
        future.on_ready(lambda _future: self._ready.set())

    def wait(self, timeout_s: float | None = None) -> bool:
        if not self._ready.wait(timeout_s):
            return False
        if self._cancelled:
            return True  # like the embedded store: cancel() wakes every waiter
        try:
            self._future.wait()  # ready: returns at once (no second callback) or raises the watch's error
        except self._fdb.FDBError as error:
            if error.code == WATCH_CANCELLED:
                return True  # the server gave up watching: report a (possible) change so callers re-read
            raise _store_error(error, self._fdb) from None
        return True

    def cancel(self) -> None:
        self._cancelled = True
        self._future.cancel()  # documented: cancel watches that are no longer needed (10 000 per client)
        self._ready.set()


class FdbTransaction(Transaction):
    """One ``fdb.Transaction`` behind the interface.  Reads block until their future is ready."""

    def __init__(self, store: FdbStore, tr: Any, operation_id: bytes | None = None) -> None:
        self._store = store
        self._fdb = store._fdb
        self._tr = tr
        self.operation_id = operation_id if operation_id is not None else new_operation_id()
        # FoundationDB counts more than this (conflict ranges too); this estimate lets a transaction that
        # is certainly too large fail before it is sent, with its size in the message.
        self._size_bytes = 0
        self._done = False
        self._committed = False

    def _source(self, snapshot: bool) -> Any:
        return self._tr.snapshot if snapshot else self._tr

    # -- reads --------------------------------------------------------------------------------------
    def get(self, key: bytes, *, snapshot: bool = False) -> bytes | None:
        check_key(key)
        try:
            value: bytes | None = self._source(snapshot).get(key).value
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None
        return value

    def get_many(self, keys: list[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        for key in keys:
            check_key(key)
        try:
            source = self._source(snapshot)
            futures = [source.get(key) for key in keys]  # all requests in flight before the first wait
            return [future.value for future in futures]
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None

    def _range(self, begin: bytes, end: bytes, limit: int, reverse: bool, snapshot: bool, mode: Any) -> Any:
        check_key(begin)
        check_key(end)
        if begin >= end:
            return ()
        try:
            # get_range sends the first batch request now and the rest as the iteration reaches them.
            return self._source(snapshot).get_range(begin, end, limit, reverse, streaming_mode=mode)
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None

    def _pairs(self, key_values: Any) -> Iterator[tuple[bytes, bytes]]:
        try:
            for kv in key_values:
                yield kv.key, kv.value
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None

    def iter_range(
        self,
        begin: bytes,
        end: bytes,
        *,
        limit: int = 0,
        reverse: bool = False,
        snapshot: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        # StreamingMode.iterator: small first batch, growing as the caller keeps iterating.
        mode = self._fdb.StreamingMode.iterator
        return self._pairs(self._range(begin, end, limit, reverse, snapshot, mode))

    def get_range(
        self,
        begin: bytes,
        end: bytes,
        *,
        limit: int = 0,
        reverse: bool = False,
        snapshot: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        # The whole range is wanted: the modes FDBRange.to_list picks (exact with a limit, else want_all).
        mode = self._fdb.StreamingMode.exact if limit else self._fdb.StreamingMode.want_all
        return list(self._pairs(self._range(begin, end, limit, reverse, snapshot, mode)))

    def get_ranges(
        self, ranges: list[tuple[bytes, bytes]], *, snapshot: bool = False
    ) -> list[list[tuple[bytes, bytes]]]:
        # Every range's first request in flight before the first is waited for.
        mode = self._fdb.StreamingMode.want_all
        pending = [self._range(begin, end, 0, False, snapshot, mode) for begin, end in ranges]
        return [list(self._pairs(key_values)) for key_values in pending]

    # -- writes (buffered in the client until commit; FDB reports their errors at commit) -------------
    def set(self, key: bytes, value: bytes) -> None:
        check_key(key)
        check_value(value)
        self._size_bytes += len(key) + len(value)
        self._tr.set(key, value)

    def clear(self, key: bytes) -> None:
        check_key(key)
        self._size_bytes += len(key)
        self._tr.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        check_key(begin)
        check_key(end)
        if begin >= end:
            return  # FoundationDB rejects an inverted range (inverted_range); empty ranges are no-ops
        self._size_bytes += len(begin) + len(end)
        self._tr.clear_range(begin, end)

    def add(self, key: bytes, delta: int) -> None:
        check_key(key)
        self._size_bytes += len(key) + 8
        self._tr.add(key, _wrap_int64(delta))

    def max(self, key: bytes, value: int) -> None:
        check_key(key)
        self._size_bytes += len(key) + 8
        self._tr.max(key, _wrap_int64(value))  # FDB compares both sides as unsigned integers

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        check_key(key[:-_VERSIONSTAMP_OFFSET_BYTES])
        check_value(value)
        offset = int.from_bytes(key[-_VERSIONSTAMP_OFFSET_BYTES:], "little")
        if offset + 10 > len(key) - _VERSIONSTAMP_OFFSET_BYTES:
            raise StoreError("versionstamp offset lies outside the key")
        self._size_bytes += len(key) + len(value)
        self._tr.set_versionstamped_key(key, value)

    def add_read_conflict_key(self, key: bytes) -> None:
        check_key(key)
        try:
            self._tr.add_read_conflict_key(key)
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None

    def watch(self, key: bytes) -> Watch:
        check_key(key)
        try:
            future = self._tr.watch(key)
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None
        return FdbWatch(future, self._fdb)

    # -- end ----------------------------------------------------------------------------------------
    def commit(self) -> None:
        if self._done:
            raise StoreError("transaction already committed or cancelled")
        if self._size_bytes > MAX_TRANSACTION_BYTES:
            raise TransactionTooLarge(self._size_bytes)
        self._done = True
        try:
            self._tr.commit().wait()
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None
        self._committed = True

    def cancel(self) -> None:
        # Cancelling a committed FDB transaction is pointless, and cancelling an uncommitted one also
        # fails the watches it created (transaction_cancelled), as the documentation says.
        if not self._committed:
            self._done = True
            self._tr.cancel()


class FdbStore(Store):
    """A FoundationDB cluster, reached through its cluster file (``None``: the default cluster file)."""

    blocks_event_loop = True
    shared = True  # other mounts, on this host or others, change the same keys

    def __init__(self, cluster_file: str | None = None) -> None:
        self.cluster_file = cluster_file
        self.url = "fdb://" if cluster_file is None else f"fdb://{cluster_file}"
        if cluster_file is not None and not os.path.exists(cluster_file):
            raise StoreUnavailable(f"{self.url}: cluster file {cluster_file} does not exist")
        self._fdb = load_fdb_api()
        fdb = self._fdb
        try:
            self._db = fdb.open(cluster_file)
            self._db.options.set_transaction_timeout(TRANSACTION_TIMEOUT_MS)
            self._db.options.set_transaction_retry_limit(TRANSACTION_RETRY_LIMIT)
        except fdb.FDBError as error:
            raise StoreUnavailable(
                f"{self.url}: cannot open the database: {_store_error(error, fdb)}"
            ) from None
        self._check_reachable()

    def _check_reachable(self) -> None:
        """One read with a short timeout, so an unreachable cluster fails here and not in a later hang."""
        fdb = self._fdb
        tr = self._db.create_transaction()
        try:
            tr.options.set_timeout(CONNECT_TIMEOUT_MS)
            tr.get(b"\x00").value  # noqa: B018 -- the read itself is the check
        except fdb.FDBError as error:
            hint = ""
            if error.code == TRANSACTION_TIMED_OUT:
                hint = (
                    f" (no answer within {CONNECT_TIMEOUT_MS / 1000:g} s: is fdbserver running, does the "
                    "cluster file name its coordinators, and was the database created with "
                    "'fdbcli --exec \"configure new single ssd\"'?)"
                )
            raise StoreUnavailable(
                f"{self.url}: FoundationDB cluster not reachable: {_store_error(error, fdb)}{hint}"
            ) from None
        finally:
            tr.cancel()

    def begin(self) -> FdbTransaction:
        try:
            return FdbTransaction(self, self._db.create_transaction())
        except self._fdb.FDBError as error:
            raise _store_error(error, self._fdb) from None

    def transact(
        self,
        fn: Callable[[Transaction], T],
        *,
        retry_limit: int = DEFAULT_RETRY_LIMIT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        operation: Operation | None = None,
    ) -> T:
        """The interface's retry loop, with FoundationDB's own policy: one ``fdb.Transaction`` for every
        attempt, ``on_error`` to back off and reset it, and the timeout set on the transaction so that it
        covers all attempts (API >= 610 keeps it across ``on_error``) and also interrupts a blocked read.
        The retry limit is set on the transaction too, so the database's default limit never ends a
        loop that the caller bounds by time."""
        fdb = self._fdb
        op = operation if operation is not None else Operation()
        deadline = time.monotonic() + timeout_s
        try:
            tr = self._db.create_transaction()
            tr.options.set_timeout(min(max(1, int(timeout_s * 1000)), _INT_MAX))  # [1, INT_MAX] ms
            tr.options.set_retry_limit(min(retry_limit, _INT_MAX))
        except fdb.FDBError as error:
            raise _store_error(error, fdb) from None
        timed_out = f"transaction on {self.url} still failing after {timeout_s:g} s"
        committed = False
        try:
            for attempt in range(retry_limit + 1):
                attempt_tr = FdbTransaction(self, tr, op.id)
                attempt_tr.maybe_committed = op.maybe_committed
                try:
                    result = fn(attempt_tr)
                    try:
                        attempt_tr.commit()
                    except TransactionTimedOut:
                        # The commit was sent and no answer came: it may have been applied.
                        op.maybe_committed = True
                        raise
                    committed = True
                    return result
                except RetryableError as error:
                    # A mapped FDB error carries its code; one the function raised itself has none.
                    code = getattr(error, "fdb_code", None)
                    if code is None:
                        code = (
                            COMMIT_UNKNOWN_RESULT if isinstance(error, CommitUnknownResult) else NOT_COMMITTED
                        )
                    op.note_retry(error)
                if attempt == retry_limit:
                    break
                try:
                    tr.on_error(code).wait()  # backs off, then resets the transaction for the next attempt
                except fdb.FDBError as error:
                    mapped = _store_error(error, fdb)
                    if isinstance(mapped, RetryableError):  # on_error's own retry limit
                        break
                    if isinstance(mapped, TransactionTimedOut):
                        raise TransactionTimedOut(timed_out) from None
                    raise mapped from None
                if time.monotonic() > deadline:
                    raise TransactionTimedOut(timed_out)
            raise RetryLimitReached(f"transaction on {self.url} failed {retry_limit + 1} times in a row")
        finally:
            if not committed:
                tr.cancel()

    def sync(self) -> None:
        """Nothing to do: a FoundationDB commit is durable (fsynced by the transaction logs of every
        replica) by the time ``commit()`` returns."""

    def close(self) -> None:
        # fdb.open caches one Database per cluster file for the whole process and the network thread
        # cannot be restarted, so there is nothing to tear down; drop our reference.
        self._db = None
