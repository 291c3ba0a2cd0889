"""Waiting for the next FUSE request: poll /dev/fuse for a moment before sleeping.

Every FUSE request is a round trip between two processes that each sleep while the other works, and
waking a sleeping CPU is slow on virtual machines: on the 2-CPU VMs we measure on, a getattr answered
from memory took 68-96 µs when the daemon slept in epoll between requests, and 22-33 µs when it polled
/dev/fuse for up to 200 µs first (``scripts/fuse_roundtrip.py`` measures both; a C passthrough,
bindfs, took 91 µs).  An application usually sends
its next request within a few µs of our answer, so a short poll catches it awake.  Polling stops as
soon as another task of the event loop can run, so background work and requests waiting on threads
(FoundationDB futures) are not delayed; when nothing comes, the daemon sleeps as before.

pyfuse3 has no hook for this.  Its request loop awaits the module function ``_wait_fuse_readable()``,
looked up at each call, so ``install()`` replaces that function.  The replacement keeps its contract:
one task at a time waits for and reads the next request (a second ``read`` of /dev/fuse would block the
event loop), and it returns False once the loop is to stop.  If a pyfuse3 release lacks the function,
the stock wait stays and a warning says so.
"""

from __future__ import annotations

import logging
import os
import select
import time

import pyfuse3
import trio

log = logging.getLogger(__name__)

#: How long to poll for the next request before sleeping (see the module docstring for the figures).
POLL_SECONDS = 200e-6
#: How many times the waiting task lets requests in progress run before it sleeps instead of polling.
BUSY_TURNS = 4


class PollingWait:
    """The replacement for pyfuse3's ``_wait_fuse_readable`` (see the module docstring)."""

    def __init__(self, fuse_fd: int, poll_seconds: float = POLL_SECONDS) -> None:
        self._fd = fuse_fd
        self._poll_seconds = poll_seconds
        self._poller = select.poll()
        self._poller.register(fuse_fd, select.POLLIN)
        self._one_reader = _LastInFirstOut()
        # Tasks handling a request: pyfuse3's loop calls the wait again right after its answer.
        self._busy: set[trio.lowlevel.Task] = set()
        # Tasks that have read a request, and so hold a receive buffer (at most pyfuse3's max_tasks).
        self._served: set[trio.lowlevel.Task] = set()
        self._stopping = False

    def stop(self) -> None:
        """Make every waiting task return False (``pyfuse3.terminate()`` wakes the one in epoll)."""
        self._stopping = True

    async def __call__(self) -> bool:
        task = trio.lowlevel.current_task()
        self._busy.discard(task)
        await self._one_reader.acquire(fresh=task not in self._served)
        try:
            if not await self._request_arrived_while_polling():
                if self._stopping:
                    return False
                try:
                    await trio.lowlevel.wait_readable(self._fd)
                except trio.ClosedResourceError:  # pyfuse3.terminate()
                    return False
                if self._stopping:
                    return False
            self._busy.add(task)
            self._served.add(task)
            return True
        finally:
            self._one_reader.release()

    async def _request_arrived_while_polling(self) -> bool:
        """Poll until a request is there (True), or until the loop has been idle for the polling time.

        While other requests are being handled, they run first: polling then would only delay their
        answers.  A handler that waits on a thread or the network keeps the loop busy for long, so
        after a few turns the wait goes to sleep instead."""
        turns_left = BUSY_TURNS
        deadline = None
        spins = 0
        while not self._stopping:
            if self._poller.poll(0):
                return True
            spins += 1
            # The loop's statistics take µs to gather: between polls, they are looked at now and then.
            if self._busy or (spins % 8 == 0 and _other_work_is_ready()):
                if not turns_left:
                    return False
                turns_left -= 1
                deadline = None
                await trio.lowlevel.checkpoint()
                continue
            now = time.perf_counter()
            if deadline is None:
                deadline = now + self._poll_seconds
            elif now >= deadline:
                return False
        return False


class _LastInFirstOut:
    """A lock handed to the task that began waiting last, preferring tasks that hold a receive buffer.

    pyfuse3 keeps up to its maximum of worker tasks, each with a receive buffer of max_write (1 MiB)
    that libfuse allocates at the task's first request.  It counts idle tasks in its own wait, which
    ``install()`` replaces, so it sees none idle and starts a new task after every request until it has
    its maximum (256), and never retires one.  Were the lock handed to any task, each new task would take
    a request and touch a buffer: a daemon that had received large writes held as many buffers as it had
    tasks, more on a busy machine (RSS 130-240 MB after 512 MiB written with 1 MiB writes).  Handing it
    to a task that already holds a buffer (the most recent idle one, whose buffer is warm) and to a
    *fresh* task only when no such task waits bounds the buffers ever touched by the most requests
    in progress at once, whatever the load.
    """

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[trio.Event] = []  # tasks that have read requests before
        self._fresh: list[trio.Event] = []  # tasks that never have

    async def acquire(self, *, fresh: bool) -> None:
        if not self._held:
            self._held = True
            return
        queue = self._fresh if fresh else self._waiting
        handed_over = trio.Event()
        queue.append(handed_over)
        try:
            await handed_over.wait()
        except BaseException:  # cancelled: pass the lock on if it had been handed over already
            if handed_over.is_set():
                self.release()
            else:
                queue.remove(handed_over)
            raise

    def release(self) -> None:
        queue = self._waiting or self._fresh
        if queue:
            queue.pop().set()  # still held: by the task woken
        else:
            self._held = False


def _other_work_is_ready() -> bool:
    stats = trio.lowlevel.current_statistics()
    return stats.tasks_runnable > 0 or stats.run_sync_soon_queue_size > 0


def _fuse_device_fds() -> list[int]:
    """Descriptors of /dev/fuse open in this process (pyfuse3 does not expose its session's)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                fds.append(int(name))
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
    return fds


def install() -> PollingWait | None:
    """Replace pyfuse3's wait for requests; call after ``pyfuse3.init()``.  None if it cannot be."""
    if not callable(getattr(pyfuse3, "_wait_fuse_readable", None)):
        log.warning("this pyfuse3 has no _wait_fuse_readable: requests are awaited without polling")
        return None
    fds = _fuse_device_fds()
    if len(fds) != 1:
        log.warning("%d descriptors of /dev/fuse are open: requests are awaited without polling", len(fds))
        return None
    wait = PollingWait(fds[0])
    pyfuse3._wait_fuse_readable = wait  # type: ignore[attr-defined]
    log.info("requests are awaited by polling /dev/fuse for %.0f µs before sleeping", POLL_SECONDS * 1e6)
    return wait
