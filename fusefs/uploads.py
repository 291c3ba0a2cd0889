"""One open file's chunks on their way to the object data tier (blocks/tier.py).

A chunk written since its last upload is *staged*: it holds a reservation of the mount's staging budget
(blocks/staging.py).  It is *sealed*, uploaded in the background by the tier's upload threads, as soon
as a write fills it to its end (a sequential writer has moved on), or when the file needs staging room
that the budget does not have; flush seals the rest and waits for all of them, so close and fsync return
only once the file's chunks are in the object store.  An upload is only ever used for the chunk bytes it
read: a write to a chunk abandons its seal (the object becomes garbage for object gc), and flush checks
that the checksum table a seal uploaded is still the chunk's.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass

import trio

from blocks import BlockError, ChecksumTable
from blocks.staging import Reservation
from blocks.tier import ChunkTier
from metadata.model import ChunkRecord


@dataclass
class Staged:
    """A chunk to seal: its record, how many of its bytes the file holds, and its live checksum table."""

    record: ChunkRecord
    length: int
    table: ChecksumTable


@dataclass
class Seal:
    """An upload started for the first `length` bytes of a staged chunk."""

    length: int
    reservation: Reservation
    upload: concurrent.futures.Future[tuple[int, ChecksumTable]]


class FileUploads:
    def __init__(self, tier: ChunkTier, chunk_size: int) -> None:
        self._tier = tier
        self._chunk_size = chunk_size
        self._staged: dict[int, Reservation] = {}  # chunk index → its room; not sealed
        self._seals: dict[int, Seal] = {}

    async def before_write(
        self, index: int, staged: Callable[[int], Staged], after: concurrent.futures.Future[None] | None
    ) -> None:
        """Chunk `index` is about to be written: stage it, waiting for room if the budget is full
        (after sealing the other chunks this file staged, as `staged` describes them, so that their
        room comes free; `after` is the last write in flight)."""
        seal = self._seals.pop(index, None)
        if seal is not None:
            seal.reservation.release()  # the upload's bytes are out of date: this write stages anew
        if index in self._staged:
            return
        budget = self._tier.staging
        reservation = budget.try_reserve(self._chunk_size)
        if reservation is None:
            for other in [i for i in self._staged if i != index]:
                self.seal(other, staged(other), after)
            patience = self._tier.upload_patience_s
            reservation = await trio.to_thread.run_sync(budget.reserve, self._chunk_size, patience)
        self._staged[index] = reservation

    def seal(self, index: int, chunk: Staged, after: concurrent.futures.Future[None] | None) -> None:
        """Start uploading chunk `index`, if staged and within the file, once `after` (the last write in
        flight) is done."""
        if chunk.length <= 0 or index not in self._staged:
            return
        reservation = self._staged.pop(index)
        record = chunk.record
        upload = self._tier.start_upload(
            record.dir_index, record.chunk_id, chunk.length, chunk.table, reservation, after
        )
        self._seals[index] = Seal(chunk.length, reservation, upload)

    def drop(self, index: int) -> None:
        """Chunk `index` needs no upload (cut off by a truncate, or past the file's end)."""
        seal = self._seals.pop(index, None)
        staged = self._staged.pop(index, None)
        for reservation in (staged, None if seal is None else seal.reservation):
            if reservation is not None:
                reservation.release()

    async def upload(self, chunks: dict[int, Staged]) -> None:
        """Seal every staged chunk of `chunks`, wait for them and for the seals started before, and set
        each record's version.  A seal started before that failed (the store was down) or is out of date
        is uploaded again; a failure of this round is raised, its chunks staged for the next flush."""
        for index in [i for i, chunk in chunks.items() if chunk.length <= 0]:
            self.drop(index)
        chunks = {index: chunk for index, chunk in chunks.items() if chunk.length > 0}
        await self._finish([index for index in chunks if index in self._seals], chunks)
        for index, chunk in chunks.items():
            self.seal(index, chunk, after=None)
        failures = await self._finish([index for index in chunks if index in self._seals], chunks)
        if failures:
            raise failures[0]

    async def _finish(self, indexes: list[int], chunks: dict[int, Staged]) -> list[BaseException]:
        """Wait for the seals of `indexes`; the record of each that uploaded its chunk as it is now
        gets the version, the others are staged again.  Returns why each other one failed."""
        seals = [self._seals.pop(index) for index in indexes]
        await trio.to_thread.run_sync(concurrent.futures.wait, [seal.upload for seal in seals])
        errors = []
        for index, seal in zip(indexes, seals, strict=True):
            chunk = chunks[index]
            error = seal.upload.exception()
            if error is not None:
                errors.append(error)
                self._staged[index] = seal.reservation  # not released: its bytes are still only here
                continue
            version, sealed = seal.upload.result()
            # Past the end the object may hold more than the file now does (a truncate): never read.
            if sealed == chunk.table and seal.length >= chunk.length:
                chunk.record.version = version
            else:  # written since without a new seal: upload it again (its room was given back)
                self._staged[index] = self._tier.staging.reserve_now(self._chunk_size)
                errors.append(BlockError(f"chunk {chunk.record.chunk_id} changed during its upload"))
        return errors

    def release_all(self) -> None:
        """The file is no longer open here: give back its room (what it staged stays on disk, dirty)."""
        for index in [*self._staged, *self._seals]:
            self.drop(index)
