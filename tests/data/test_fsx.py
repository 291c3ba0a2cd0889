"""An fsx-style randomized file tester on a real mount.

Thousands of random operations on one file (pwrite at random offsets and sizes, pread, ftruncate up and
down, O_APPEND writes, mmap reads, shared writable mmap writes with msync, fsync, close and reopen, several
descriptors at once) are each checked against an in-memory model (a bytearray).  Offsets and sizes are
drawn with a bias towards the inline limit and chunk boundaries, so a file keeps moving from inline to
chunks and across chunks.

A failure prints the seed and the last operations; ``FSX_SEED=<n>`` replays one run, ``FSX_OPS=<n>``
changes the number of operations.
"""

from __future__ import annotations

import mmap
import os
import random
import time
from collections import deque
from pathlib import Path

import pytest

from .conftest import SMALL

PAGE = mmap.PAGESIZE


class Fsx:
    def __init__(self, path: Path, seed: int, *, inline_max: int, chunk_size: int, max_size: int,
                 verify_mount=None) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.seed = seed
        self.inline_max = inline_max
        self.chunk_size = chunk_size
        self.max_size = max_size
        self.model = bytearray()
        self.history: deque[str] = deque(maxlen=40)
        self.counts: dict[str, int] = {}
        self.fds: list[int] = []
        self.append_fd = -1
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.fds.append(fd)
        for _ in range(2):
            self.fds.append(os.open(path, os.O_RDWR))
        self.append_fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    # -- helpers ------------------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        history = "\n  ".join(self.history)
        pytest.fail(f"fsx seed {self.seed} (replay with FSX_SEED={self.seed}): {message}\n"
                    f"last operations:\n  {history}", pytrace=False)

    def offset(self, limit: int) -> int:
        """A random offset in [0, limit], often near an interesting boundary."""
        rng = self.rng
        choice = rng.random()
        if choice < 0.45 or limit == 0:
            return rng.randint(0, max(limit, 0))
        anchors = [self.inline_max, len(self.model)]
        anchors += [k * self.chunk_size for k in range(1, self.max_size // self.chunk_size + 1)]
        anchor = rng.choice(anchors)
        return max(0, min(limit, anchor + rng.randint(-PAGE - 3, PAGE + 3)))

    def size(self) -> int:
        rng = self.rng
        choice = rng.random()
        if choice < 0.5:
            return rng.randint(1, 4096)
        if choice < 0.85:
            return rng.randint(1, 65536)
        return rng.randint(1, 300_000)

    def fd(self) -> int:
        return self.rng.choice(self.fds)

    def check(self, what: str, got: bytes, offset: int) -> None:
        want = bytes(self.model[offset : offset + len(got)])
        if got != want:
            first = next(i for i in range(min(len(got), len(want))) if got[i] != want[i]) \
                if len(got) == len(want) else None
            where = f"first difference at file offset {offset + first}" if first is not None else \
                f"got {len(got)} bytes, expected {len(want)}"
            self.fail(f"{what}: data differs from the model ({where}; file size {len(self.model)})")

    # -- operations ---------------------------------------------------------------------------------
    def op_write(self) -> None:
        offset = self.offset(min(len(self.model) + self.chunk_size, self.max_size))
        n = min(self.size(), self.max_size - offset) or 1
        data = self.rng.randbytes(n)
        fd = self.fd()
        self.history.append(f"pwrite(fd{fd}, off={offset}, len={n})")
        written = os.pwrite(fd, data, offset)
        if written != n:
            self.fail(f"short write {written} of {n}")
        if offset > len(self.model):
            self.model.extend(bytes(offset - len(self.model)))
        self.model[offset : offset + n] = data

    def op_append(self) -> None:
        n = min(self.size(), max(1, self.max_size - len(self.model)))
        data = self.rng.randbytes(n)
        self.history.append(f"append(len={n}) at {len(self.model)}")
        written = os.write(self.append_fd, data)
        if written != n:
            self.fail(f"short append {written} of {n}")
        self.model.extend(data)
        position = os.lseek(self.append_fd, 0, os.SEEK_CUR)
        if position != len(self.model):
            self.fail(f"O_APPEND descriptor at {position} after append, file size {len(self.model)}")

    def op_read(self) -> None:
        offset = self.offset(len(self.model) + 100)
        n = self.size()
        fd = self.fd()
        self.history.append(f"pread(fd{fd}, off={offset}, len={n})")
        self.check("pread", os.pread(fd, n, offset), offset)

    def op_truncate(self) -> None:
        if self.rng.random() < 0.5:
            new = self.offset(len(self.model))  # down (or same)
        else:
            new = self.offset(min(len(self.model) + 3 * self.chunk_size, self.max_size))
        fd = self.fd()
        self.history.append(f"ftruncate(fd{fd}, {new}) from {len(self.model)}")
        os.ftruncate(fd, new)
        if new < len(self.model):
            del self.model[new:]
        else:
            self.model.extend(bytes(new - len(self.model)))

    def op_mmap_read(self) -> None:
        if not self.model:
            return
        fd = self.fd()
        offset = self.offset(len(self.model) - 1)
        n = min(self.size(), len(self.model) - offset)
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        self.history.append(f"mmap read(fd{fd}, off={offset}, len={n})")
        with mmap.mmap(fd, offset + n - start, mmap.MAP_SHARED, mmap.PROT_READ, offset=start) as m:
            self.check("mmap read", m[offset - start : offset - start + n], offset)

    def op_mmap_write(self) -> None:
        if not self.model:
            return
        fd = self.rng.choice(self.fds)
        offset = self.offset(len(self.model) - 1)
        n = min(self.size(), len(self.model) - offset)
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        data = self.rng.randbytes(n)
        self.history.append(f"mmap write(fd{fd}, off={offset}, len={n}) + msync")
        with mmap.mmap(fd, offset + n - start, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                       offset=start) as m:
            m[offset - start : offset - start + n] = data
            m.flush()
        self.model[offset : offset + n] = data

    def op_fsync(self) -> None:
        fd = self.fd()
        self.history.append(f"fsync(fd{fd})")
        os.fsync(fd)

    def op_drop_cache(self) -> None:
        """Write back and drop the file's cached pages: the next reads come from the daemon."""
        fd = self.fd()
        self.history.append(f"fsync+fadvise DONTNEED(fd{fd})")
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def op_reopen(self) -> None:
        index = self.rng.randrange(len(self.fds))
        self.history.append(f"close+reopen(fd{self.fds[index]})")
        os.close(self.fds[index])
        self.fds[index] = os.open(self.path, os.O_RDWR)
        if self.rng.random() < 0.3:
            os.close(self.append_fd)
            self.append_fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def op_stat(self) -> None:
        fd = self.fd()
        self.history.append(f"fstat(fd{fd})")
        size = os.fstat(fd).st_size
        if size != len(self.model):
            self.fail(f"fstat size {size}, model size {len(self.model)}")
        if os.stat(self.path).st_size != len(self.model):
            self.fail(f"stat size {os.stat(self.path).st_size}, model size {len(self.model)}")

    def verify_all(self, label: str) -> None:
        """Read the whole file through a new descriptor."""
        self.history.append(f"verify whole file ({label})")
        with open(self.path, "rb") as f:
            data = f.read()
        if len(data) != len(self.model):
            self.fail(f"{label}: file has {len(data)} bytes, model {len(self.model)}")
        self.check(label, data, 0)

    OPS = [  # (weight, operation)
        (30, op_write), (25, op_read), (8, op_truncate), (8, op_append), (6, op_mmap_read),
        (6, op_mmap_write), (3, op_fsync), (3, op_drop_cache), (5, op_reopen), (5, op_stat),
    ]

    def run(self, count: int, deadline: float, minimum: int) -> int:
        """Up to ``count`` operations, stopping at ``deadline`` once ``minimum`` are done: a loaded
        machine runs fewer in the budget, never too few to mean something."""
        ops = [op for _, op in self.OPS]
        weights = [w for w, _ in self.OPS]
        done = 0
        for done in range(1, count + 1):
            op = self.rng.choices(ops, weights)[0]
            self.counts[op.__name__] = self.counts.get(op.__name__, 0) + 1
            try:
                op(self)
            except OSError as error:
                self.fail(f"{op.__name__} raised {error!r}")
            if done % 500 == 0:
                self.verify_all(f"after {done} operations")
            if done >= minimum and time.monotonic() > deadline:
                break
        self.verify_all("at the end")
        return done

    def close(self) -> None:
        for fd in [*self.fds, self.append_fd]:
            os.close(fd)
        self.fds = []


def _seed() -> int:
    text = os.environ.get("FSX_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**32)


@pytest.mark.parametrize(
    ("settings", "options", "max_size", "ops", "budget_s"),
    [
        pytest.param(SMALL, (), 1_200_000, 8000, 25.0, id="small-chunks"),
        # strict: no page cache kept, so every read is answered by the daemon.
        pytest.param(SMALL, ("strict",), 1_200_000, 4000, 20.0, id="small-chunks-strict"),
        # writeback_cache: the kernel merges writes into pages and sends them at its own time.
        pytest.param(SMALL, ("writeback_cache",), 1_200_000, 4000, 20.0, id="small-chunks-writeback"),
        pytest.param({}, (), 6 * 1024 * 1024, 2000, 15.0, id="default-sizes"),
    ],
)
def test_fsx(data_mounts, settings: dict, options: tuple[str, ...], max_size: int, ops: int,
             budget_s: float) -> None:
    mp = data_mounts.mount(**settings, options=options)
    inline_max = settings.get("inline_max", 64 * 1024)
    chunk_size = settings.get("chunk_size", 4 * 1024 * 1024)
    count = int(os.environ.get("FSX_OPS", ops))
    seed = _seed()
    print(f"fsx seed {seed} ({settings or 'default sizes'}, options {options})")
    fsx = Fsx(mp / "fsx.bin", seed, inline_max=inline_max, chunk_size=chunk_size, max_size=max_size)
    # With a data tier every close and fsync uploads the chunks written (SeaweedFS here: 25-40 MB/s).
    minimum = min(count, 250 if data_mounts.data_tier else 1000)
    try:
        done = fsx.run(count, time.monotonic() + budget_s, minimum=minimum)
    finally:
        fsx.close()
    # What was closed reads back after a remount: the store and the chunk files agree.
    data_mounts.remount(mp)
    fsx.verify_all("after remount")
    print(f"fsx seed {seed}: {done} operations {sorted(fsx.counts.items())}")
    assert done >= minimum, f"only {done} operations ran"
