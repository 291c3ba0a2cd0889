"""Whole-range reads in bounded transactions, for tools that walk a whole filesystem (fsck, dump).

FoundationDB ends a transaction after 5 s, so a range of any size is read in pages, each page in its own
snapshot transaction resuming after the last key of the one before.  Pages are *not* one snapshot: a
record changed between two pages may be seen before or after the change.  Callers that need a
consistent view run on an unmounted filesystem, or re-check what they found in one transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from metadata.store import Store, Transaction

#: Keys per page, and value bytes per page: far below FoundationDB's 5 s and reply limits.
PAGE_KEYS = 10_000
PAGE_BYTES = 4_000_000


def read_page(
    tr: Transaction, begin: bytes, end: bytes, page_keys: int = PAGE_KEYS
) -> list[tuple[bytes, bytes]]:
    """Up to ``page_keys`` pairs (fewer once ``PAGE_BYTES`` of values were read) from ``begin``."""
    rows: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in tr.iter_range(begin, end, limit=page_keys, snapshot=True):
        rows.append((key, value))
        size += len(value)
        if size >= PAGE_BYTES:
            break
    return rows


def scan(store: Store, begin: bytes, end: bytes, page_keys: int = PAGE_KEYS) -> Iterator[tuple[bytes, bytes]]:
    """Every pair in [begin, end), read page by page (see the module docstring)."""
    while True:
        rows = store.transact(functools.partial(read_page, begin=begin, end=end, page_keys=page_keys))
        yield from rows
        if not rows:
            return
        begin = rows[-1][0] + b"\0"
