"""Operation records: a transaction function that is not idempotent is applied once, even when retried.

On FoundationDB a commit can end in ``commit_unknown_result``: it may or may not have been applied, and
``Store.transact`` runs the function again with ``tr.maybe_committed``.  A function with an effect that
a second application would repeat (an atomic add to a counter, a change-log append, an id reservation)
or whose result a second application would change (the chunks it freed) is wrapped *whole* in
``idempotent``: its result is stored under the transaction's operation id, in the same transaction, and
a retry that finds it returns it instead of running again.  Guarding only a part of a function is not
enough: its other effects would be applied twice.

Stores whose commits never end in an unknown result (``tr.commit_outcome_certain``: the embedded store)
skip the records: they cost no read and no key there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from metadata.keys import FsKeys
from metadata.model import ChunkRecord, InodeAttr, Removal, now_ns, pack, unpack
from metadata.store import CorruptValue, Transaction

P = ParamSpec("P")
R = TypeVar("R")
_NS_PER_MINUTE = 60_000_000_000
#: A result larger than this (the chunks of a huge file) is split over several keys, each well under
#: FoundationDB's 100 kB value limit.
_PIECE_BYTES = 64 * 1024


class HasKeys(Protocol):
    @property
    def keys(self) -> FsKeys: ...


S = TypeVar("S", bound=HasKeys)


def idempotent(
    fn: Callable[Concatenate[Transaction, S, P], R],
) -> Callable[Concatenate[Transaction, S, P], R]:
    """For a transaction function ``fn(tr, scope, ...)`` whose ``scope`` (a Namespace) has ``keys``."""

    @functools.wraps(fn)
    def wrapper(tr: Transaction, scope: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return apply_once(tr, scope.keys, functools.partial(fn, tr, scope, *args, **kwargs))

    return wrapper


def idempotent_method(
    method: Callable[Concatenate[S, Transaction, P], R],
) -> Callable[Concatenate[S, Transaction, P], R]:
    """For a transaction method ``method(self, tr, ...)`` of an object with ``keys`` (Namespace)."""

    @functools.wraps(method)
    def wrapper(self: S, tr: Transaction, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return apply_once(tr, self.keys, functools.partial(method, self, tr, *args, **kwargs))

    return wrapper


def apply_once(tr: Transaction, keys: FsKeys, apply: Callable[[], R]) -> R:
    """``apply()``, unless an earlier attempt of this transaction committed it: then its result."""
    if not tr.operation_id or tr.commit_outcome_certain:
        return apply()
    minute = now_ns() // _NS_PER_MINUTE
    if tr.maybe_committed:
        # The record is looked for in this minute and the one before: a retry follows within seconds.
        for when in (minute, minute - 1):
            pieces = tr.get_range(*keys.operation_pieces(when, tr.operation_id))
            if pieces:
                return cast(R, _decode(b"".join(value for _, value in pieces)))
    result = apply()
    raw = _encode(result)
    for index, start in enumerate(range(0, len(raw), _PIECE_BYTES)):
        tr.set(keys.operation(minute, tr.operation_id, index), raw[start : start + _PIECE_BYTES])
    return result


def trim_operations(tr: Transaction, keys: FsKeys, keep_minutes: int = 10) -> None:
    tr.clear_range(*keys.operations_before(now_ns() // _NS_PER_MINUTE - keep_minutes))


# -- results ------------------------------------------------------------------------------------------
# Chunks are recorded by where their files are (all their callers use: the files to delete), without
# their checksum tables, so a result stays small.


def _encode(result: object) -> bytes:
    if result is None:
        return pack(None)
    if isinstance(result, int) and not isinstance(result, bool):
        return pack(["int", result])
    if isinstance(result, InodeAttr):
        return pack(["attr", result.ino, result.encode()])
    if isinstance(result, Removal):
        freed = None if result.freed_chunks is None else _chunk_places(result.freed_chunks)
        return pack(["removal", result.attr.ino, result.attr.encode(), freed])
    if isinstance(result, list) and all(isinstance(item, ChunkRecord) for item in result):
        return pack(["chunks", _chunk_places(result)])
    raise TypeError(f"an idempotent transaction function cannot record a {type(result).__name__}")


def _chunk_places(chunks: list[ChunkRecord]) -> list[list[int]]:
    return [[record.chunk_id, record.dir_index] for record in chunks]


def _decode(raw: bytes) -> object:
    value = unpack(raw, "operation record")
    try:
        if value is None:
            return None
        kind, *fields = value
        if kind == "int":
            return int(fields[0])
        if kind == "attr":
            return InodeAttr.decode(fields[0], fields[1])
        if kind == "removal":
            attr = InodeAttr.decode(fields[0], fields[1])
            return Removal(attr, None if fields[2] is None else _chunks(fields[2]))
        if kind == "chunks":
            return _chunks(fields[0])
    except (TypeError, ValueError, IndexError) as error:
        raise CorruptValue(f"corrupt operation record: {error}") from error
    raise CorruptValue(f"corrupt operation record: {value!r:.80}")


def _chunks(places: Any) -> list[ChunkRecord]:
    return [ChunkRecord(int(chunk_id), int(dir_index)) for chunk_id, dir_index in places]
