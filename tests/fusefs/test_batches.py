"""fusefs/batches.py: garbage collection's batches, read lazily, and stopped between batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from fusefs.batches import batches


def test_items_in_batches_of_the_size() -> None:
    assert list(batches(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches(range(6), 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(batches([], 3)) == []


def test_items_are_read_as_batches_are_taken() -> None:
    read: list[int] = []

    def items() -> Iterator[int]:
        for item in range(10):
            read.append(item)
            yield item

    batched = batches(items(), 4)
    assert next(batched) == [0, 1, 2, 3] and read == [0, 1, 2, 3]


def test_no_batch_once_stopped() -> None:
    stop = threading.Event()
    taken = []
    for batch in batches(range(10), 4, stop):
        taken.append(batch)
        stop.set()  # as an unmount would, from another thread, during the first batch
    assert taken == [[0, 1, 2, 3]]
    assert list(batches(range(2), 4, stop)) == []  # nor a last, partial one
