"""fusefs.writebehind: large writes answered at once, run in order, errors raised later, bytes bounded.

Driven with a real single-thread executor and real files; the mount tests (test_fsx, test_crash,
test_faults) exercise it through the data path with 256 KiB to 1 MiB writes."""

from __future__ import annotations

import concurrent.futures
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from fusefs.writebehind import WriteBehind


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        yield pool


def test_writes_land_in_order(executor, tmp_path: Path) -> None:
    path = tmp_path / "chunk"
    path.write_bytes(b"")
    fd = os.open(path, os.O_WRONLY)

    async def main() -> None:
        behind = WriteBehind(executor)
        for i in range(50):  # overlapping writes: only the order they were made in gives this result
            await behind.submit(4, os.pwrite, fd, b"%04d" % i, (i // 2) * 2)
        await behind.drain()
        assert behind.idle

    try:
        trio.run(main)
    finally:
        os.close(fd)
    expected = bytearray()
    for i in range(50):
        offset = (i // 2) * 2
        expected[offset : offset + 4] = b"%04d" % i
    assert path.read_bytes() == bytes(expected)


def test_an_error_is_raised_by_the_next_call_once(executor) -> None:
    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def main() -> list[str]:
        behind = WriteBehind(executor)
        seen = []
        await behind.submit(1, full)  # answered at once: the failure is not known yet
        with pytest.raises(OSError) as raised:
            await behind.drain()
        seen.append(errno.errorcode[raised.value.errno])
        await behind.drain()  # reported once
        await behind.submit(1, full)
        await trio.to_thread.run_sync(executor.submit(lambda: None).result)  # the failure is in
        with pytest.raises(OSError) as raised:
            await behind.drain()
        seen.append(errno.errorcode[raised.value.errno])
        return seen

    assert trio.run(main) == ["ENOSPC", "ENOSPC"]


def test_bytes_in_flight_are_bounded(executor) -> None:
    release = threading.Event()
    started = []

    def slow(n: int) -> None:
        started.append(n)
        release.wait(5)

    async def main() -> None:
        behind = WriteBehind(executor, max_bytes=3)
        for n in range(3):
            await behind.submit(1, slow, n)
        with trio.move_on_after(0.3) as waited:
            await behind.submit(1, slow, 3)  # a 4th byte: must wait for the first write
        assert waited.cancelled_caught
        release.set()
        await behind.drain()

    trio.run(main)
    assert started == [0, 1, 2, 3]
