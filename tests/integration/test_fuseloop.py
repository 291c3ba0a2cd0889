"""fusefs.fuseloop, the wait for FUSE requests that polls before sleeping, and fusefs.quicklock.

The wait is driven here on a real pipe in place of /dev/fuse (both are plain readable descriptors to
poll and epoll); that the mount's daemon really uses it is checked on a real mount at the end."""

from __future__ import annotations

import os
import re
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from fusefs.fuseloop import POLL_SECONDS, PollingWait
from fusefs.quicklock import QuickLock


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_a_request_already_waiting_is_taken_at_once(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.write(write_end, b"r")

    async def main() -> bool:
        with trio.fail_after(1):
            return await PollingWait(read_end)()

    assert trio.run(main) is True


def test_an_idle_wait_sleeps_instead_of_spinning(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    idle_s = 0.5

    async def main() -> tuple[bool, float, float]:
        wait = PollingWait(read_end)
        async with trio.open_nursery() as nursery:

            async def request_later() -> None:
                await trio.sleep(idle_s)
                os.write(write_end, b"r")

            nursery.start_soon(request_later)
            cpu0, t0 = _cpu_seconds(), time.monotonic()
            got = await wait()
            return got, _cpu_seconds() - cpu0, time.monotonic() - t0

    got, cpu_s, elapsed_s = trio.run(main)
    assert got is True
    assert elapsed_s >= idle_s * 0.9
    assert cpu_s < idle_s / 2, f"the wait burnt {cpu_s:.3f} s of CPU in {elapsed_s:.3f} s"


def test_other_tasks_run_while_a_wait_polls(pipe: tuple[int, int]) -> None:
    """A polling wait gives way to ready work: a task that yields 1 000 times finishes long before
    the request comes, where a wait that kept the loop would hold it back POLL_SECONDS per turn."""
    read_end, write_end = pipe

    async def main() -> tuple[float, bool]:
        wait = PollingWait(read_end)
        done_after = []
        async with trio.open_nursery() as nursery:

            async def worker() -> None:
                t0 = time.monotonic()
                for _ in range(1000):
                    await trio.lowlevel.checkpoint()
                done_after.append(time.monotonic() - t0)
                os.write(write_end, b"r")

            nursery.start_soon(worker)
            with trio.fail_after(5):
                got = await wait()
        return done_after[0], got

    worker_s, got = trio.run(main)
    assert got is True
    assert worker_s < 1000 * POLL_SECONDS / 4, f"1 000 turns of the worker took {worker_s:.3f} s"


def test_one_task_at_a_time_takes_a_request(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe

    async def main() -> list[int]:
        wait = PollingWait(read_end)
        order: list[int] = []
        async with trio.open_nursery() as nursery:

            async def reader(n: int) -> None:
                assert await wait()
                order.append(n)
                os.read(read_end, 1)  # as pyfuse3 reads the request before it waits again

            for n in range(3):
                nursery.start_soon(reader, n)
            for _ in range(3):
                await trio.sleep(0.05)
                os.write(write_end, b"r")
        return order

    assert sorted(trio.run(main)) == [0, 1, 2]


def test_stop_ends_every_wait(pipe: tuple[int, int]) -> None:
    read_end, _ = pipe

    async def main() -> list[bool]:
        wait = PollingWait(read_end)
        results: list[bool] = []
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:

                async def waiter() -> None:
                    results.append(await wait())

                for _ in range(3):
                    nursery.start_soon(waiter)
                await trio.sleep(0.05)  # past the polling: one waits in epoll, two on the reader lock
                wait.stop()
                trio.lowlevel.notify_closing(read_end)  # what pyfuse3.terminate() does
        return results

    assert trio.run(main) == [False, False, False]


def test_the_reader_role_goes_to_the_task_that_waited_last(pipe: tuple[int, int]) -> None:
    """So the same few tasks take the requests, and only their receive buffers are ever touched."""
    read_end, write_end = pipe

    async def main() -> list[int]:
        wait = PollingWait(read_end, poll_seconds=0)
        order: list[int] = []
        async with trio.open_nursery() as nursery:

            async def reader(n: int) -> None:
                assert await wait()
                order.append(n)
                os.read(read_end, 1)

            for n in range(4):
                nursery.start_soon(reader, n)
                await trio.sleep(0.01)  # 0 waits in epoll, then 1, 2 and 3 queue up in this order
            for _ in range(4):
                os.write(write_end, b"r")
                await trio.sleep(0.05)
        return order

    assert trio.run(main) == [0, 3, 2, 1]


def test_a_task_that_has_read_before_is_preferred_to_a_fresh_one(pipe: tuple[int, int]) -> None:
    """pyfuse3 starts a task after every request (it cannot see our idle ones): a fresh task would
    touch a new 1 MiB receive buffer, so it reads only when no task that holds one is waiting."""
    read_end, write_end = pipe

    async def main() -> list[str]:
        wait = PollingWait(read_end, poll_seconds=0)
        order: list[str] = []

        async def reader(name: str, times: int) -> None:
            for _ in range(times):
                assert await wait()
                order.append(name)
                os.read(read_end, 1)

        async def request() -> None:
            os.write(write_end, b"r")
            await trio.testing.wait_all_tasks_blocked()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader, "a", 2)
                await trio.testing.wait_all_tasks_blocked()  # a waits in epoll
                nursery.start_soon(reader, "b", 1)
                await trio.testing.wait_all_tasks_blocked()  # b queues, fresh
                await request()  # a reads, then queues again: it holds a buffer now; b waits in epoll
                nursery.start_soon(reader, "c", 1)
                await trio.testing.wait_all_tasks_blocked()  # c queues, fresh, after a
                await request()  # b
                await request()  # a, although c began waiting after it
                await request()  # c, the only one left
        return order

    assert trio.run(main) == ["a", "b", "a", "c"]


def test_a_cancelled_waiter_passes_the_reader_role_on(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe

    async def main() -> bool:
        wait = PollingWait(read_end, poll_seconds=0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)  # holds the reader role, in epoll
            await trio.sleep(0.01)
            with trio.move_on_after(0.05):
                await wait()  # queued behind it, then cancelled
            os.write(write_end, b"r")  # the first returns; a new waiter must get the role
            await trio.sleep(0.01)
            os.read(read_end, 1)
            os.write(write_end, b"r")
            with trio.fail_after(2):
                return await wait()

    assert trio.run(main) is True


def test_the_mount_waits_by_polling(mount_fs) -> None:
    mnt = mount_fs()
    (mnt / "f").write_bytes(b"x")
    assert (mnt / "f").read_bytes() == b"x"
    assert "requests are awaited by polling /dev/fuse" in mount_fs.daemon_log(mnt)


def test_quick_lock_excludes_and_hands_over() -> None:
    async def main() -> list[str]:
        lock = QuickLock()
        events: list[str] = []

        async def holder(name: str) -> None:
            async with lock:
                events.append(f"{name} in")
                await trio.sleep(0.01)  # the other task must wait here, not enter
                events.append(f"{name} out")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder, "a")
            nursery.start_soon(holder, "b")
        assert not lock.locked()
        return events

    events = trio.run(main)
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_large_writes_touch_few_receive_buffers(mount_fs) -> None:
    """pyfuse3 keeps up to 256 worker tasks with a 1 MiB receive buffer each; taking turns, they all
    held one after many large writes (RSS ~300 MB).  Handed to the last idle task, they still spread
    over the tasks pyfuse3 kept starting (RSS 120 MB idle, 150-240 MB on a busy machine); handed to
    tasks that already hold a buffer first, one sequential writer keeps the RSS near 36 MB, busy or
    not, so the bound below leaves room for a busy machine and a slower allocator."""
    mnt = mount_fs()
    block = os.urandom(1 << 20)
    with open(mnt / "big", "wb") as f:
        for _ in range(512):
            f.write(block)
    # Log lines read "date time pid level ...": the foreground daemon is the mounting process.
    pid = int(re.search(r"^\S+ \S+ (\d+) INFO ", mount_fs.daemon_log(mnt), re.M).group(1))
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
    assert rss_kib < 100 * 1024, f"daemon RSS {rss_kib // 1024} MiB after 512 MiB written"
