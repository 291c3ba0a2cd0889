"""Concurrent namespace operations through one mount: each operation is one transaction, so races have
exactly one winner, counts add up, and a rename is atomic to every reader."""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ._util import write_file

pytestmark = pytest.mark.chaos

THREADS = 8


def _race(fn, n: int = THREADS) -> list[str]:
    """Run fn(i) in n threads released together; 'OK' or the errno name per thread."""
    barrier = threading.Barrier(n)

    def run(i: int) -> str:
        barrier.wait()
        try:
            fn(i)
            return "OK"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_racing_creators_have_one_winner(mnt: Path) -> None:
    for round_ in range(5):
        name = mnt / f"dir{round_}"
        assert Counter(_race(lambda i: os.mkdir(name))) == {"OK": 1, "EEXIST": THREADS - 1}
        f = mnt / f"file{round_}"
        results = _race(lambda i: os.close(os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)))
        assert Counter(results) == {"OK": 1, "EEXIST": THREADS - 1}
        link = mnt / f"link{round_}"
        assert Counter(_race(lambda i: os.symlink(str(i), link))) == {"OK": 1, "EEXIST": THREADS - 1}
    assert len(os.listdir(mnt)) == 15


def test_racing_renames_of_one_source(mnt: Path) -> None:
    for round_ in range(5):
        src = mnt / f"src{round_}"
        write_file(src, b"payload %d" % round_)
        results = _race(lambda i: os.rename(src, mnt / f"dst{round_}-{i}"))
        assert Counter(results) == {"OK": 1, "ENOENT": THREADS - 1}
        winners = [n for n in os.listdir(mnt) if n.startswith(f"dst{round_}-")]
        assert len(winners) == 1 and (mnt / winners[0]).read_bytes() == b"payload %d" % round_


def test_racing_unlink_and_rmdir(mnt: Path) -> None:
    write_file(mnt / "f", b"")
    assert Counter(_race(lambda i: os.unlink(mnt / "f"))) == {"OK": 1, "ENOENT": THREADS - 1}
    (mnt / "d").mkdir()
    assert Counter(_race(lambda i: os.rmdir(mnt / "d"))) == {"OK": 1, "ENOENT": THREADS - 1}
    # rmdir racing a create inside: either the directory is gone or it kept its new entry
    for round_ in range(10):
        d = mnt / f"e{round_}"
        d.mkdir()
        results = _race(lambda i: os.rmdir(d) if i == 0 else write_file(d / f"f{i}", b""), 2)
        if results[0] == "OK":
            assert not d.exists() and results[1] == "ENOENT"
        else:
            assert results[0] == "ENOTEMPTY" and os.listdir(d) == ["f1"]


def test_parallel_links_and_creates_add_up(mnt: Path) -> None:
    target = mnt / "target"
    write_file(target, b"x")
    (mnt / "links").mkdir()
    per_thread = 40

    def link_many(i: int) -> None:
        for j in range(per_thread):
            os.link(target, mnt / "links" / f"l{i}-{j}")

    assert _race(link_many) == ["OK"] * THREADS
    assert os.stat(target).st_nlink == 1 + THREADS * per_thread
    assert len(os.listdir(mnt / "links")) == THREADS * per_thread

    def unlink_half(i: int) -> None:
        for j in range(0, per_thread, 2):
            os.unlink(mnt / "links" / f"l{i}-{j}")

    assert _race(unlink_half) == ["OK"] * THREADS
    assert os.stat(target).st_nlink == 1 + THREADS * per_thread // 2
    # many creators in one directory, many subdirectories of one parent
    (mnt / "many").mkdir()

    def create_many(i: int) -> None:
        for j in range(50):
            write_file(mnt / "many" / f"t{i}-{j}", b"%d" % j)
            os.mkdir(mnt / "many" / f"d{i}-{j}")

    assert _race(create_many) == ["OK"] * THREADS
    names = os.listdir(mnt / "many")
    assert len(names) == THREADS * 100
    inos = [os.lstat(mnt / "many" / n).st_ino for n in names]
    assert len(set(inos)) == len(inos), "two live files share an inode number"
    assert os.stat(mnt / "many").st_nlink == 2 + THREADS * 50


def test_rename_over_is_atomic_for_readers(mnt: Path) -> None:
    """While one thread replaces ``current`` with rename(2), readers always find a complete file."""
    write_file(mnt / "current", b"version 0\n" * 100)
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                with open(mnt / "current", "rb") as f:
                    data = f.read()
            except OSError as exc:
                problems.append(f"open failed: {errno.errorcode.get(exc.errno)}")
                return
            first = data.split(b"\n", 1)[0]
            if not data or data != (first + b"\n") * 100:
                problems.append(f"torn read: {len(data)} bytes starting {data[:12]!r}")
                return

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for v in range(1, 150):
            write_file(mnt / "next", (b"version %d\n" % v) * 100)
            os.rename(mnt / "next", mnt / "current")
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not problems, problems[:5]
    assert (mnt / "current").read_bytes() == b"version 149\n" * 100
