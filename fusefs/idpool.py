"""Batched id allocation: one store transaction per ``batch`` ids, never one per create.

Ids are taken before the transaction that uses them, so a retried transaction uses the same id and can
recognise its own committed work (see metadata/namespace.py)."""

from __future__ import annotations

import trio

from metadata.meta import Meta


class IdPool:
    def __init__(self, meta: Meta, kind: str, batch: int = 1024) -> None:
        self._meta = meta
        self._kind = kind
        self._batch = batch
        self._next = 0
        self._end = 0
        self._lock = trio.Lock()

    async def take(self) -> int:
        if self._next >= self._end:
            async with self._lock:
                if self._next >= self._end:
                    first = await self._meta.reserve_ids(self._kind, self._batch)
                    self._next, self._end = first, first + self._batch
        taken = self._next
        self._next += 1
        return taken
