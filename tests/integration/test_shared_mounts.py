"""Several read-write mounts of one embedded store file with ``-o shared``: each behaves as a mount of
FoundationDB (transactions in worker threads, 1 s cache timeouts, change-log invalidation), and a
sole-owner mount and shared ones refuse each other with a message saying what to do."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ._util import write_file


@pytest.fixture
def shared_pair(mount_fs, fs_target: str) -> tuple[Path, Path]:
    if fs_target != "fusefs":
        pytest.skip("-o shared is an option of fusefs' embedded store")
    a = mount_fs(options=("shared",))
    b = mount_fs.mount_again(a, ("shared",))
    return a, b


def _eventually(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert check()
            return
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_two_read_write_mounts_see_each_others_changes(shared_pair: tuple[Path, Path]) -> None:
    a, b = shared_pair
    write_file(a / "from-a", b"one")
    _eventually(lambda: (b / "from-a").read_bytes() == b"one")
    write_file(b / "from-a", b"two, longer")
    _eventually(lambda: (a / "from-a").read_bytes() == b"two, longer")
    os.mkdir(b / "d")
    os.rename(a / "from-a", a / "d" / "moved")
    _eventually(lambda: os.listdir(b / "d") == ["moved"] and not (b / "from-a").exists())
    os.unlink(b / "d" / "moved")
    _eventually(lambda: os.listdir(a / "d") == [])


def test_appends_through_one_mount_all_land(shared_pair: tuple[Path, Path]) -> None:
    """O_APPEND writes through many short-lived handles of one mount while transactions run in worker
    threads, so requests interleave at every store access as on FoundationDB: an open racing another
    open or a close must share the file's one open file, never load a stale copy and write it back."""
    a, _ = shared_pair
    lines, tags = 100, "abcd"
    for round_ in range(3):
        log = a / f"log{round_}"
        write_file(log, b"")

        def append(tag: str, log: Path = log) -> None:
            for n in range(lines):
                fd = os.open(log, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, f"{tag}{n:03d}\n".encode())
                finally:
                    os.close(fd)

        writers = [threading.Thread(target=append, args=(tag,)) for tag in tags]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        expected = sorted(f"{tag}{n:03d}" for tag in tags for n in range(lines))
        assert sorted(log.read_text().split()) == expected


def test_sole_owner_and_shared_mounts_refuse_each_other(mount_fs, fs_target: str) -> None:
    if fs_target != "fusefs":
        pytest.skip("-o shared is an option of fusefs' embedded store")
    shared = mount_fs(options=("shared",))
    if not mount_fs.mounts[shared].store.startswith("sqlite://"):
        pytest.skip("FoundationDB has no owner lock")
    with pytest.raises(
        mount_fs.Refused, match="mounted in shared mode by other processes: mount it with -o shared"
    ):
        mount_fs.mount_again(shared)
    mount_fs.mount_again(shared, ("ro",))  # a reader is welcome beside them
    sole = mount_fs()
    with pytest.raises(mount_fs.Refused, match=r"in use by another process \(pid \d+\) that owns it alone"):
        mount_fs.mount_again(sole, ("shared",))
