"""The descriptor cache: bounded, shared between threads, never closing a descriptor in use."""

from __future__ import annotations

import os
import random
import threading
from functools import partial
from pathlib import Path

from blocks_owner import claimed_store

from blocks import ChecksumTable
from blocks.fdcache import FdCache

CHUNK = 64 * 1024


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_evicted_descriptor_in_use_closes_at_release(tmp_path: Path) -> None:
    cache = FdCache(capacity=2)
    paths = [tmp_path / f"f{index}" for index in range(4)]
    for path in paths:
        path.write_bytes(b"x")
    with cache.use("held", lambda: os.open(paths[0], os.O_RDONLY)) as held:
        for index in (1, 2, 3):
            with cache.use(index, partial(os.open, paths[index], os.O_RDONLY)):
                pass
        assert len(cache) == 2
        assert _is_open(held) and os.pread(held, 1, 0) == b"x"
    assert not _is_open(held)
    cache.close_all()
    assert len(cache) == 0


def test_hit_reuses_the_descriptor(tmp_path: Path) -> None:
    cache = FdCache(capacity=4)
    (tmp_path / "f").write_bytes(b"")
    opened: list[int] = []

    def opener() -> int:
        opened.append(os.open(tmp_path / "f", os.O_RDONLY))
        return opened[-1]

    for _ in range(5):
        with cache.use("f", opener):
            pass
    assert len(opened) == 1
    cache.close_all()
    assert not _is_open(opened[0])


def test_store_keeps_at_most_max_open_fds(tmp_path: Path) -> None:
    store = claimed_store([str(tmp_path)], CHUNK, max_open_fds=3)
    baseline = len(os.listdir("/proc/self/fd"))
    for chunk_id in range(1, 20):
        store.write(0, chunk_id, 0, b"q", ChecksumTable(CHUNK))
    assert len(os.listdir("/proc/self/fd")) <= baseline + 3
    store.close()
    assert len(os.listdir("/proc/self/fd")) <= baseline


def test_threads_writing_reading_and_deleting_through_a_tiny_cache(tmp_path: Path) -> None:
    store = claimed_store([str(tmp_path)], CHUNK, max_open_fds=2)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for round_number in range(30):
                chunk_id = seed * 1000 + round_number % 5 + 1
                data = rng.randbytes(rng.randrange(1, 3 * 4096))
                table = ChecksumTable(CHUNK)
                store.delete(0, chunk_id)
                store.write(0, chunk_id, 100, data, table)
                assert store.read(0, chunk_id, 100, len(data), table) == data, f"seed={seed}"
                store.delete(0, seed * 1000 + (round_number + 2) % 5 + 1)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert not errors, errors
