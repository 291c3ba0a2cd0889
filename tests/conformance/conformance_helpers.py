"""Small helpers shared by the conformance tests."""

from __future__ import annotations

from collections.abc import Iterable

import fdb.tuple

from metadata.store import Store, versionstamped_key


def key(prefix: bytes, *parts: object) -> bytes:
    """A tuple-encoded key under ``prefix``, as the filesystem builds its keys."""
    return fdb.tuple.pack(parts, prefix=prefix)


def put(store: Store, items: Iterable[tuple[bytes, bytes]]) -> None:
    pairs = list(items)

    def write(tr):  # type: ignore[no-untyped-def]
        for k, v in pairs:
            tr.set(k, v)

    store.transact(write)


def read(store: Store, k: bytes) -> bytes | None:
    return store.transact(lambda tr: tr.get(k))


def read_range(
    store: Store, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
) -> list[tuple[bytes, bytes]]:
    return store.transact(lambda tr: tr.get_range(begin, end, limit=limit, reverse=reverse))


def stamped_key(prefix: bytes, *parts: object, user_version: int = 0) -> bytes:
    """The tuple ``(*parts, Versionstamp.incomplete(user_version))`` under ``prefix``, ready for
    ``set_versionstamped_key`` (``fdb.tuple.pack_with_versionstamp`` needs libfdb_c loaded)."""
    return versionstamped_key(fdb.tuple.pack(parts, prefix=prefix), user_version)
