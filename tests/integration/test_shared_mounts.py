"""Two read-write mounts of one filesystem changing the same directories and files at once.

This is what a shared store is for (FoundationDB; the embedded store with ``-o shared``): every
operation is one serializable transaction, so whatever two mounts do concurrently, the result is as if
their operations ran one after the other.  Each test ends with checks that no name was lost or doubled
and that the counters agree with the tree.  On the embedded store in its sole-owner
default) the two mounts use ``-o shared``.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from ._util import write_file

#: Generous: the bound on staleness a mount documents is ~1 s; a loaded machine may take longer.
VISIBLE_WITHIN_S = 30.0


@pytest.fixture
def two_mounts(mount_fs) -> tuple[Path, Path]:
    if mount_fs.target != "fusefs":
        pytest.skip("two read-write mounts of one filesystem are fusefs' (on a shared store)")
    # The embedded store's sole-owner runs mount these two with -o shared; the others already do.
    options = ("shared",) if mount_fs.store_mode == "sole" else ()
    a = mount_fs(options=options)
    return a, mount_fs.mount_again(a, options)


def _in_parallel(*jobs) -> list:
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        return job()

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return [future.result() for future in [pool.submit(run, job) for job in jobs]]


def _eventually(check, timeout: float = VISIBLE_WITHIN_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _files_used(mp: Path) -> int:
    st = os.statvfs(mp)
    return st.f_files - st.f_ffree


def test_creates_in_one_directory_from_both_mounts(two_mounts) -> None:
    a, b = two_mounts
    os.mkdir(a / "d")
    _eventually(lambda: os.stat(b / "d"))
    used_before = _files_used(a)

    def create(mp: Path, tag: str) -> None:
        for i in range(150):
            write_file(mp / "d" / f"{tag}{i:03d}", f"{tag}{i}".encode())

    _in_parallel(lambda: create(a, "a"), lambda: create(b, "b"))
    expected = sorted([f"a{i:03d}" for i in range(150)] + [f"b{i:03d}" for i in range(150)])
    for mp in (a, b):
        _eventually(lambda mp=mp: _expect(sorted(os.listdir(mp / "d")) == expected))
        assert (mp / "d" / "a042").read_bytes() == b"a42"
        assert (mp / "d" / "b149").read_bytes() == b"b149"
    assert _files_used(a) - used_before == 300


def test_same_name_created_from_both_mounts_exactly_once(two_mounts) -> None:
    a, b = two_mounts
    for i in range(40):

        def mkdir(mp: Path, i: int = i) -> int:
            try:
                os.mkdir(mp / f"d{i}")
                return 0
            except OSError as error:
                return error.errno or -1

        results = _in_parallel(lambda: mkdir(a), lambda: mkdir(b))
        assert sorted(results) == [0, errno.EEXIST], f"d{i}: {results}"
    _eventually(lambda: _expect(sorted(os.listdir(b)) == sorted(f"d{i}" for i in range(40))))


def test_renames_across_mounts_lose_and_double_nothing(two_mounts) -> None:
    """Both mounts move files between two directories at once: every file ends in exactly one place."""
    a, b = two_mounts
    for name in ("left", "right"):
        os.mkdir(a / name)
    for i in range(60):
        write_file(a / "left" / f"f{i}", str(i).encode())
    _eventually(lambda: _expect(len(os.listdir(b / "left")) == 60))

    def shuffle(mp: Path, parity: int) -> None:
        for round_ in range(3):
            src, dst = ("left", "right") if round_ % 2 == 0 else ("right", "left")
            for i in range(parity, 60, 2):
                try:
                    os.rename(mp / src / f"f{i}", mp / dst / f"f{i}")
                except FileNotFoundError:
                    pass  # this mount's cache was behind the other's move: fine, as on NFS

    _in_parallel(lambda: shuffle(a, 0), lambda: shuffle(b, 1))

    def placed_once() -> None:
        left, right = set(os.listdir(a / "left")), set(os.listdir(a / "right"))
        assert not left & right
        assert left | right == {f"f{i}" for i in range(60)}

    _eventually(placed_once)
    for i in range(60):
        where = "left" if (a / "left" / f"f{i}").exists() else "right"
        _eventually(lambda i=i, where=where: _expect((b / where / f"f{i}").read_bytes() == str(i).encode()))


def test_rm_rf_on_one_mount_while_the_other_creates_inside(two_mounts) -> None:
    """The tree either keeps what the creator made (rmdir fails with ENOTEMPTY) or is gone; never a
    directory whose entries point nowhere."""
    a, b = two_mounts
    os.mkdir(a / "t")
    for i in range(20):
        os.mkdir(a / "t" / f"s{i}")
    _eventually(lambda: _expect(len(os.listdir(b / "t")) == 20))

    def create() -> None:
        for i in range(20):
            for j in range(5):
                try:
                    write_file(b / "t" / f"s{i}" / f"f{j}", b"x")
                except FileNotFoundError:
                    pass  # its directory was removed first

    def remove() -> list[int]:
        failures = []
        for i in range(20):
            for leaf in sorted(os.listdir(a / "t" / f"s{i}")) if (a / "t" / f"s{i}").exists() else []:
                try:
                    os.unlink(a / "t" / f"s{i}" / leaf)
                except FileNotFoundError:
                    pass
            try:
                os.rmdir(a / "t" / f"s{i}")
            except OSError as error:
                failures.append(error.errno)
        return failures

    _, rmdir_failures = _in_parallel(create, remove)
    assert set(rmdir_failures) <= {errno.ENOTEMPTY, errno.ENOENT}, rmdir_failures

    def consistent() -> None:
        for mp in (a, b):
            for sub in os.listdir(mp / "t"):
                for leaf in os.listdir(mp / "t" / sub):
                    assert (mp / "t" / sub / leaf).read_bytes() == b"x"

    _eventually(consistent)


def test_a_file_closed_on_one_mount_is_read_whole_on_the_other(two_mounts) -> None:
    """Close-to-open: after close returns on one mount, an open on the other sees all of it."""
    a, b = two_mounts
    for size in (0, 100, 70_000, 3 * 1024 * 1024):
        data = os.urandom(size)
        write_file(a / "f", data)
        _eventually(lambda data=data: _expect((b / "f").read_bytes() == data))
        data = os.urandom(size + 1)
        write_file(b / "f", data)
        _eventually(lambda data=data: _expect((a / "f").read_bytes() == data))



def test_two_read_write_mounts_see_each_others_changes(two_mounts: tuple[Path, Path]) -> None:
    a, b = two_mounts
    write_file(a / "from-a", b"one")
    _eventually(lambda: _expect((b / "from-a").read_bytes() == b"one"))
    write_file(b / "from-a", b"two, longer")
    _eventually(lambda: _expect((a / "from-a").read_bytes() == b"two, longer"))
    os.mkdir(b / "d")
    os.rename(a / "from-a", a / "d" / "moved")
    _eventually(lambda: _expect(os.listdir(b / "d") == ["moved"] and not (b / "from-a").exists()))
    os.unlink(b / "d" / "moved")
    _eventually(lambda: _expect(os.listdir(a / "d") == []))


def test_what_a_mount_answers_itself_follows_the_other_mounts_changes(two_mounts) -> None:
    """A mount answers lookups in a directory it created, and the attributes its own changes left, from
    its daemon's cache (fusefs/nscache.py): another mount's create, chmod and unlink there must still
    show, as the change log reports them."""
    a, b = two_mounts
    os.mkdir(a / "d")
    for n in range(20):  # keeps the directory known whole: each create finds it as the last one left it
        write_file(a / "d" / f"mine{n}", b"")
        assert not (a / "d" / "theirs").exists()
    _eventually(lambda: _expect((b / "d" / "mine19").exists()))
    write_file(b / "d" / "theirs", b"from b")
    _eventually(lambda: _expect((a / "d" / "theirs").read_bytes() == b"from b"))
    write_file(a / "d" / "one-more", b"")
    os.chmod(b / "d", 0o700)
    _eventually(lambda: _expect(stat.S_IMODE(os.stat(a / "d").st_mode) == 0o700))
    os.unlink(b / "d" / "mine0")
    _eventually(lambda: _expect(not (a / "d" / "mine0").exists()))
    assert sorted(os.listdir(a / "d")) == sorted(os.listdir(b / "d"))


def test_appends_through_one_mount_all_land(two_mounts: tuple[Path, Path]) -> None:
    """O_APPEND writes through many short-lived handles of one mount while transactions run in worker
    threads, so requests interleave at every store access as on FoundationDB: an open racing another
    open or a close must share the file's one open file, never load a stale copy and write it back."""
    a, _ = two_mounts
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
    if fs_target != "fusefs" or mount_fs.store_mode != "sole":
        pytest.skip("sole-owner mounts are the embedded store's default mode")
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


def _expect(condition: bool) -> None:
    assert condition
