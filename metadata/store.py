"""The transactional key-value interface every metadata backend implements.

The model is FoundationDB's: ordered byte keys, serializable optimistic transactions, read-your-writes,
snapshot reads that add no read conflict, atomic add/max, versionstamped keys and watches.  A
*transaction function* ``fn(tr) -> result`` may run more than once, so it must be a pure function of
what it reads through ``tr``.

Backends are synchronous: ``Store.transact`` blocks the calling thread.  The trio side decides how to
call it (``Store.blocks_event_loop`` tells whether running it inline on the event loop is acceptable).
"""

from __future__ import annotations

import abc
import os
import random
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from metadata.written import Written

# FoundationDB's documented limits; the embedded backend enforces the same ones so that code that works
# on one backend works on the other.
MAX_KEY_BYTES = 10_000
MAX_VALUE_BYTES = 100_000
MAX_TRANSACTION_BYTES = 10_000_000

DEFAULT_RETRY_LIMIT = 100
DEFAULT_TIMEOUT_S = 5.0

T = TypeVar("T")


class StoreError(Exception):
    """Base class of every error a store raises."""


class RetryableError(StoreError):
    """The transaction did not commit and may simply be run again."""


class TransactionConflict(RetryableError):
    """Another transaction wrote something this one read (FoundationDB error 1020)."""


class CommitUnknownResult(RetryableError):
    """The commit may or may not have been applied (FoundationDB error 1021)."""


class TransactionTooOld(RetryableError):
    """The transaction's read version is older than the conflict history the store keeps (FoundationDB
    error 1007, after its 5-second MVCC window)."""


class LimitExceeded(StoreError):
    """A key, value or transaction is larger than FoundationDB allows."""


class KeyTooLarge(LimitExceeded):
    def __init__(self, size: int) -> None:
        super().__init__(f"key of {size} bytes exceeds the {MAX_KEY_BYTES}-byte key limit")


class ValueTooLarge(LimitExceeded):
    def __init__(self, size: int) -> None:
        super().__init__(f"value of {size} bytes exceeds the {MAX_VALUE_BYTES}-byte value limit")


class TransactionTooLarge(LimitExceeded):
    def __init__(self, size: int) -> None:
        super().__init__(
            f"transaction of {size} bytes exceeds the {MAX_TRANSACTION_BYTES}-byte transaction limit"
        )


class TransactionTimedOut(StoreError):
    """The transaction (with its retries) ran longer than its timeout."""


class RetryLimitReached(StoreError):
    """The transaction kept failing with retryable errors."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened."""


class StoreLocked(StoreError):
    """Another process owns the store (for example, a mounted daemon)."""


class StoreFull(StoreError):
    """The disk under the store is full: the transaction did not commit (ENOSPC for the application)."""


class CorruptValue(StoreError):
    """A stored value could not be decoded."""


def check_key(key: bytes) -> None:
    if len(key) > MAX_KEY_BYTES:
        raise KeyTooLarge(len(key))


def check_value(value: bytes) -> None:
    if len(value) > MAX_VALUE_BYTES:
        raise ValueTooLarge(len(value))


def encode_int64(value: int) -> bytes:
    """The little-endian 8-byte encoding that FoundationDB's atomic add and max operate on."""
    return struct.pack("<q", value)


def decode_int64(raw: bytes | None) -> int:
    if raw is None:
        return 0
    return struct.unpack("<q", raw.ljust(8, b"\0")[:8])[0]


class Watch(abc.ABC):
    """Becomes ready when the watched key's value changes after the watching transaction committed."""

    @abc.abstractmethod
    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the key changed (True) or the timeout passed (False)."""

    @abc.abstractmethod
    def cancel(self) -> None: ...


class Transaction(abc.ABC):
    """One attempt of a transaction.  Mutations are buffered until ``commit``."""

    #: A random id that stays the same across every retry of one ``transact`` call; operations that are
    #: not idempotent record it so that a retry after ``CommitUnknownResult`` recognises its own work.
    operation_id: bytes = b""
    #: True when the previous attempt ended in ``CommitUnknownResult`` (it may have been applied).
    maybe_committed: bool = False
    #: True when ``commit`` can never end in ``CommitUnknownResult`` (it either applied or raised a
    #: definite error): then no operation needs a record to recognise its own work.
    commit_outcome_certain: bool = False
    #: Set by transaction functions that delete (unlink, rmdir, reclaim, a flush that shrinks a file): on a
    #: full disk the embedded store lets such a commit spend its space reserve, so that ``rm`` can free
    #: space.  A hint only: FoundationDB ignores it.
    frees_space: bool = False
    #: Set per attempt by a caller that keeps a cache of the namespace (a mounted daemon): the namespace's
    #: transaction functions note there what they read and wrote (metadata/written.py).
    written: Written | None = None

    @abc.abstractmethod
    def get(self, key: bytes, *, snapshot: bool = False) -> bytes | None: ...

    def get_many(self, keys: list[bytes], *, snapshot: bool = False) -> list[bytes | None]:
        """Values of several keys.  Backends with network round trips issue the reads at once, so a
        listing costs one round trip rather than one per entry."""
        return [self.get(key, snapshot=snapshot) for key in keys]

    @abc.abstractmethod
    def iter_range(
        self,
        begin: bytes,
        end: bytes,
        *,
        limit: int = 0,
        reverse: bool = False,
        snapshot: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Key-value pairs with begin <= key < end in key order (or reverse), fetched in batches so that a
        range too large for one reply streams.  ``limit`` 0 means no limit."""

    def get_range(
        self,
        begin: bytes,
        end: bytes,
        *,
        limit: int = 0,
        reverse: bool = False,
        snapshot: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        return list(self.iter_range(begin, end, limit=limit, reverse=reverse, snapshot=snapshot))

    def get_ranges(
        self, ranges: list[tuple[bytes, bytes]], *, snapshot: bool = False
    ) -> list[list[tuple[bytes, bytes]]]:
        """The pairs of several whole ranges (begin, end), as ``get_range`` each.  Backends with network
        round trips issue the reads at once: many small ranges (the back-references of a query's
        matches) cost one round trip rather than one each."""
        return [self.get_range(begin, end, snapshot=snapshot) for begin, end in ranges]

    @abc.abstractmethod
    def set(self, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    def clear(self, key: bytes) -> None: ...

    @abc.abstractmethod
    def clear_range(self, begin: bytes, end: bytes) -> None: ...

    @abc.abstractmethod
    def add(self, key: bytes, delta: int) -> None:
        """Atomically add a signed 64-bit little-endian integer (no read conflict)."""

    @abc.abstractmethod
    def max(self, key: bytes, value: int) -> None:
        """Atomically store max(current, value), both unsigned 64-bit little-endian."""

    @abc.abstractmethod
    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        """``key`` as made by ``fdb.tuple.pack_with_versionstamp``: the 10-byte placeholder is replaced
        at commit by the commit version, so such keys sort in commit order."""

    @abc.abstractmethod
    def add_read_conflict_key(self, key: bytes) -> None: ...

    @abc.abstractmethod
    def watch(self, key: bytes) -> Watch:
        """A watch that becomes active when this transaction commits."""

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def cancel(self) -> None:
        """Release what the transaction holds; a no-op after commit.  Safe to call twice."""


class Store(abc.ABC):
    """A handle on one store (a SQLite file or a FoundationDB cluster, plus a key prefix)."""

    #: The store's URL, for messages.
    url: str
    #: True when a transaction may block for long enough that it must not run on the event loop
    #: (network round trips); False when running it inline is cheaper than a thread hop.
    blocks_event_loop: bool = True
    #: True when other processes or hosts may change the store while we run (their changes reach a mount
    #: through the change log); False when this process owns the store.
    shared: bool = True

    @abc.abstractmethod
    def begin(self) -> Transaction:
        """A new transaction, for explicit control (tests, tools).  Filesystem code uses ``transact``."""

    def transact(
        self,
        fn: Callable[[Transaction], T],
        *,
        retry_limit: int = DEFAULT_RETRY_LIMIT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        operation: Operation | None = None,
    ) -> T:
        """Run ``fn`` in a transaction and commit, retrying on retryable errors with a short backoff.

        Ends in ``RetryLimitReached`` or ``TransactionTimedOut`` rather than retrying forever.  A caller
        that retries further passes the same ``operation`` to every call."""
        op = operation if operation is not None else Operation()
        deadline = time.monotonic() + timeout_s
        for attempt in range(retry_limit + 1):
            tr = self.begin()
            tr.operation_id = op.id
            tr.maybe_committed = op.maybe_committed
            try:
                result = fn(tr)
                tr.commit()
                return result
            except RetryableError as error:
                op.note_retry(error)
            finally:
                tr.cancel()
            if time.monotonic() > deadline:
                raise TransactionTimedOut(f"transaction on {self.url} still failing after {timeout_s:g} s")
            if attempt:
                time.sleep(backoff_s(attempt))
        raise RetryLimitReached(f"transaction on {self.url} failed {retry_limit + 1} times in a row")

    @abc.abstractmethod
    def sync(self) -> None:
        """Make every transaction committed so far durable against a machine crash."""

    @abc.abstractmethod
    def close(self) -> None: ...


def new_operation_id() -> bytes:
    return os.urandom(16)


@dataclass
class Operation:
    """One logical operation across all its attempts, even across several ``transact`` calls (a caller
    that rides through a store outage calls ``transact`` again after a timeout): the same id every time,
    and ``maybe_committed`` once any attempt ended with its commit outcome unknown."""

    id: bytes = field(default_factory=new_operation_id)
    maybe_committed: bool = False
    #: Attempts that ended in a conflict (FoundationDB 1020), and in another retryable error (a commit
    #: outcome unknown, a transaction too old, a store recovering): the daemon's statistics tell them apart.
    conflicts: int = 0
    other_retries: int = 0

    def note_retry(self, error: RetryableError) -> None:
        """An attempt ended in ``error``: count it, and remember a commit that may have landed."""
        if isinstance(error, TransactionConflict):
            self.conflicts += 1
        else:
            self.other_retries += 1
        if isinstance(error, CommitUnknownResult):
            self.maybe_committed = True


def backoff_s(attempt: int) -> float:
    """A random pause before retry ``attempt``: growing from 1 ms up to 0.1 s (the exponent is capped,
    since a retry loop bounded by time may run thousands of attempts)."""
    return min(0.001 * 2 ** min(attempt, 7), 0.1) * random.random()


_VERSIONSTAMP_TYPE_CODE = b"\x33"  # fdb.tuple's code for a 96-bit versionstamp element


def versionstamped_key(prefix: bytes, user_version: int = 0) -> bytes:
    """``prefix`` + an incomplete tuple-encoded versionstamp, in the form ``set_versionstamped_key`` takes.

    The same bytes as ``fdb.tuple.pack_with_versionstamp(prefix_tuple + (Versionstamp(),))``, built by hand
    because that function needs libfdb_c loaded, which the embedded backend must not.  The completed key
    unpacks with ``fdb.tuple.unpack`` to a tuple ending in a complete ``Versionstamp``."""
    offset = len(prefix) + 1
    placeholder = b"\xff" * 10 + struct.pack(">H", user_version)
    return prefix + _VERSIONSTAMP_TYPE_CODE + placeholder + struct.pack("<I", offset)
