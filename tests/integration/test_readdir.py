"""Directory listings: completeness of big directories, entry types, and stable continuation while the
directory changes under an open listing."""

from __future__ import annotations

import os
import random
import stat
import threading
from pathlib import Path

import pytest

from ._util import write_file


def _create_empty(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def test_listdir_3000_entries(mnt: Path) -> None:
    """Twelve of the daemon's readdir pages (READDIR_PAGE_ENTRIES) and dozens of the kernel's readdir
    buffers; tests/metadata lists 100 000 entries through the store."""
    d = mnt / "big"
    d.mkdir()
    names = [f"entry-{i:05d}-{'x' * (i % 40)}" for i in range(3_000)]
    for name in names:
        _create_empty(d / name)
    listed = os.listdir(d)
    assert len(listed) == len(names), f"listed {len(listed)} of {len(names)}"
    assert sorted(listed) == sorted(names)
    with os.scandir(d) as it:
        entries = list(it)
    assert sorted(e.name for e in entries) == sorted(names)
    for e in random.Random(7).sample(entries, 50):
        assert e.inode() == os.lstat(e.path).st_ino and e.is_file(follow_symlinks=False)
    assert os.stat(d).st_nlink == 2


@pytest.mark.chaos
def test_readdir_entry_types(mnt: Path) -> None:
    (mnt / "dir").mkdir()
    write_file(mnt / "file", b"x")
    os.symlink("file", mnt / "link")
    os.mkfifo(mnt / "fifo")
    with os.scandir(mnt) as it:
        seen = {
            e.name: (e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False), e.is_symlink())
            for e in it
        }
    assert seen == {
        "dir": (True, False, False),
        "file": (False, True, False),
        "link": (False, False, True),
        "fifo": (False, False, False),
    }
    with os.scandir(mnt) as it:
        for e in it:
            assert e.inode() == os.lstat(e.path).st_ino
            assert stat.S_IFMT(e.stat(follow_symlinks=False).st_mode) == stat.S_IFMT(os.lstat(e.path).st_mode)
    assert os.listdir(mnt / "dir") == []


@pytest.mark.chaos
def test_listing_stable_while_directory_changes(mnt: Path) -> None:
    """Entries present the whole time are listed exactly once, whatever is created and removed
    between the reads of one listing (names on both sides of the resume point, in any order)."""
    d = mnt / "d"
    d.mkdir()
    rng = random.Random(42)
    stable = {f"stable-{i:04d}-{rng.randrange(10**6):06d}" for i in range(2000)}
    for name in stable:
        _create_empty(d / name)
    transient: list[str] = []
    counter = 0
    for _round in range(2):
        seen: list[str] = []
        with os.scandir(d) as it:
            for i, entry in enumerate(it):
                seen.append(entry.name)
                if i % 100 == 0:
                    for _ in range(20):  # new names sorting before, among and after the stable ones
                        name = rng.choice(["a", "stable-", "stable-5", "z"]) + f"new-{counter:05d}"
                        counter += 1
                        _create_empty(d / name)
                        transient.append(name)
                    for _ in range(min(10, len(transient))):
                        os.unlink(d / transient.pop(rng.randrange(len(transient))))
        dupes = {n for n in seen if seen.count(n) > 1} if len(seen) != len(set(seen)) else set()
        assert not dupes, f"entries listed twice: {sorted(dupes)[:10]}"
        missing = stable - set(seen)
        assert not missing, f"{len(missing)} stable entries skipped, e.g. {sorted(missing)[:5]}"
    assert set(os.listdir(d)) == stable | set(transient)


@pytest.mark.chaos
def test_listing_stable_with_concurrent_writer(mnt: Path) -> None:
    """The same with another thread creating, renaming and removing entries at full speed."""
    d = mnt / "d"
    d.mkdir()
    stable = {f"s{i:04d}" for i in range(1500)}
    for name in stable:
        _create_empty(d / name)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        n = 0
        try:
            while not stop.is_set():
                a, b = d / f"churn-{n}", d / f"a-churn-{n}"
                _create_empty(a)
                os.rename(a, b)
                if n >= 5:
                    os.unlink(d / f"a-churn-{n - 5}")
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(5):
            seen = [e.name for e in os.scandir(d)]
            assert len(seen) == len(set(seen)), "an entry was listed twice"
            assert stable <= set(seen), f"skipped: {sorted(stable - set(seen))[:5]}"
    finally:
        stop.set()
        t.join()
    assert not errors, errors
