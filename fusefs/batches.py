"""Garbage collection's batching, shared by the collection of chunk files (fusefs/gc.py) and of objects
(fusefs/objectgc.py): candidates are checked against the store in batches, one read transaction each,
so every transaction stays far below FoundationDB's 5 s and size limits whatever their number."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batches(items: Iterable[T], size: int, stop: threading.Event | None = None) -> Iterator[list[T]]:
    """`items` in lists of at most `size`, read lazily; none more once `stop` is set (by another
    thread: an unmount ends a collection after its current batch)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            if stop is not None and stop.is_set():
                return
            yield batch
            batch = []
    if batch and not (stop is not None and stop.is_set()):
        yield batch
