"""Two read-write mounts of one filesystem with an object data tier, each with its own block (cache)
directory as two hosts would have: large files written on one are read back on the other, which never
had their chunks locally.  Real mounts (-o shared on the embedded store), a real SeaweedFS."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.objects import parse_object_name

from .conftest import CHUNK, mount_host
from .test_objects_cli import Run

#: Generous: the shared mode's kernel caches time out after ~1 s; a loaded machine may take longer.
VISIBLE_WITHIN_S = 30.0


def eventually(check: Callable[[], None], timeout: float = VISIBLE_WITHIN_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def chunk_files(directory: Path) -> list[Path]:
    return [
        p
        for p in directory.rglob("*")
        if p.is_file() and p.parent.name != "object-cache" and len(p.parent.name) == 2
    ]


def test_written_on_one_read_on_the_other(hosts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, run = hosts
    data = os.urandom(5 * CHUNK + 1234)
    (a / "big").write_bytes(data)  # closed: uploaded and recorded
    assert chunk_files(tmp_path / "cache-b") == []

    def same() -> None:
        _equal(b / "big", data)

    eventually(same)
    assert chunk_files(tmp_path / "cache-b") == []  # served from the object cache, not staged
    assert len(list((tmp_path / "cache-b" / "object-cache").iterdir())) == 6
    # Read again past the kernel's page cache: every chunk comes from the object cache, a hit each.
    fetched = _object_cache_stats(run, b)
    assert fetched["misses"] >= 6
    with open(b / "big", "rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert hashlib.sha256(file.read()).digest() == hashlib.sha256(data).digest()
    again = _object_cache_stats(run, b)
    assert again["misses"] == fetched["misses"]
    assert again["hits"] >= fetched["hits"] + 6


def _object_cache_stats(run: Run, mountpoint: Path) -> dict[str, int]:
    result = run("stats", "--once", "--json", "--interval", "0.1", str(mountpoint))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["caches"]["object_cache"]


def test_overwrite_truncate_rename_delete_seen_on_the_other(hosts) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = hosts
    first = os.urandom(3 * CHUNK)
    (a / "f").write_bytes(first)
    eventually(lambda: _equal(b / "f", first))
    # Overwrite a middle piece on b, which holds none of the chunks: it copies the chunk it writes.
    with open(b / "f", "r+b") as file:
        file.seek(CHUNK + 100)
        file.write(b"B" * 5000)
    second = first[: CHUNK + 100] + b"B" * 5000 + first[CHUNK + 5100 :]
    eventually(lambda: _equal(a / "f", second))
    os.truncate(a / "f", CHUNK + 10)
    eventually(lambda: _equal(b / "f", second[: CHUNK + 10]))
    third = os.urandom(2 * CHUNK + 7)
    (b / "g").write_bytes(third)
    os.rename(b / "g", b / "f")
    eventually(lambda: _equal(a / "f", third))
    os.unlink(a / "f")
    eventually(lambda: _missing(b / "f"))


def test_objects_are_versions(hosts, seaweedfs, bucket: str) -> None:  # type: ignore[no-untyped-def]
    a, _, _ = hosts
    from blocks.objects import DataUrl, ObjectStore, load_credentials

    objects = ObjectStore(
        seaweedfs.endpoint, DataUrl(bucket, "fs"), load_credentials(seaweedfs.credentials_file)
    )
    (a / "f").write_bytes(os.urandom(CHUNK))
    names = [parse_object_name(n) for n in objects.names()]
    assert len(names) == 1 and names[0] is not None
    (a / "f").write_bytes(os.urandom(CHUNK))  # same chunk id (truncate then rewrite), a new version
    after = [parse_object_name(n) for n in objects.names()]
    assert len(after) == 2 and {v for _, v in after if True} != {names[0][1]}


def _equal(path: Path, data: bytes) -> None:
    # Compared as digests: a failing comparison of megabytes makes pytest diff them for minutes.
    got = path.read_bytes()
    assert (len(got), hashlib.sha256(got).hexdigest()) == (len(data), hashlib.sha256(data).hexdigest())


def _missing(path: Path) -> None:
    assert not path.exists()


def test_gc_deletes_only_unreferenced_objects_past_the_grace(hosts, seaweedfs, bucket: str) -> None:  # type: ignore[no-untyped-def]
    a, b, run = hosts
    from blocks.objects import DataUrl, ObjectStore, load_credentials

    objects = ObjectStore(
        seaweedfs.endpoint, DataUrl(bucket, "fs"), load_credentials(seaweedfs.credentials_file)
    )
    keep = os.urandom(3 * CHUNK)
    (a / "keep").write_bytes(keep)
    eventually(lambda: _equal(b / "keep", keep))
    with open(b / "keep", "r+b") as file:  # b copies chunk 1 under a new id: its old object is garbage
        file.seek(CHUNK)
        file.write(b"b" * 10)
    keep = keep[:CHUNK] + b"b" * 10 + keep[CHUNK + 10 :]
    (a / "gone").write_bytes(os.urandom(2 * CHUNK))
    (a / "trunc").write_bytes(os.urandom(3 * CHUNK))
    os.truncate(a / "trunc", 100)  # now inline-sized but still chunked: one chunk left
    trunc = (a / "trunc").read_bytes()
    os.unlink(a / "gone")
    for mnt in (a, b):
        assert run("umount", str(mnt)).returncode == 0
    before = len(list(objects.names()))
    assert before > 4
    kept = run("gc", "--store", run.store, "--name", "fs")
    assert kept.returncode == 0, kept.stderr
    assert "0 unreferenced deleted" in kept.stdout and len(list(objects.names())) == before
    collected = run("gc", "--store", run.store, "--name", "fs", "--object-grace", "0")
    assert collected.returncode == 0, collected.stderr
    assert f"{before - 4} unreferenced deleted" in collected.stdout, collected.stdout
    assert len(list(objects.names())) == 4  # keep: 3 chunks, trunc: 1
    result = run("mount", "--store", run.store, "--name", "fs", "-o", "shared", str(a))
    assert result.returncode == 0, result.stderr
    assert (a / "keep").read_bytes() == keep
    assert (a / "trunc").read_bytes() == trunc


def test_object_store_down_during_close(hosts, seaweedfs) -> None:  # type: ignore[no-untyped-def]
    """close(2) waits, its uploads retrying, while the object store is down, and returns once it is
    back; what it acknowledged is then readable from the other mount.  The writer is a child process:
    a descriptor of the file in this one would be closed (FUSE flush) by every program it starts."""
    a, b, _ = hosts
    data = os.urandom(2 * CHUNK + 99)
    (a.parent / "data").write_bytes(data)
    seaweedfs.stop()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(a.parent / "data"), str(a / "f")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
        # close(2) cannot succeed while nothing can be uploaded.
        with pytest.raises(subprocess.TimeoutExpired):
            writer.wait(2.0)
    finally:
        seaweedfs.start()
    assert writer.wait(120) == 0
    eventually(lambda: _equal(b / "f", data))


WRITER = """
import sys
data = open(sys.argv[1], "rb").read()
file = open(sys.argv[2], "wb")
file.write(data)
file.flush()
print("written", flush=True)
file.close()
"""


def _kill_mount(run: Run, mnt: Path, log_text: str) -> None:
    """kill -9 the daemon serving `mnt` (its pid from `fusefs mount`'s output), then detach the dead
    mount point."""
    import re
    import signal

    pid = int(re.findall(r"\(pid (\d+),", log_text)[0])
    os.kill(pid, signal.SIGKILL)
    from fusefs.daemon_records import wait_for_exit

    assert wait_for_exit(pid, 30)
    subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


RACING_WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, open(sys.argv[2], "rb").read(), 0)
os.fsync(fd)  # acknowledged: in the object store and recorded
os.pwrite(fd, b"X" * int(sys.argv[3]), 0)  # staged only
print("written", flush=True)
sys.stdin.read()  # held open until killed
"""


@pytest.mark.parametrize("recovered_on", ["same host", "other host"])
def test_kill_9_then_recovery(hosts, tmp_path: Path, recovered_on: str) -> None:  # type: ignore[no-untyped-def]
    """A mount killed with writes staged but not uploaded: a mount that reaches its staging directory
    finishes the upload (the writes it left, as without a data tier); one that does not (another host)
    keeps what the last fsync acknowledged.  Either way the file reads back whole everywhere."""
    a, b, run = hosts
    acknowledged = os.urandom(3 * CHUNK)
    (tmp_path / "data").write_bytes(acknowledged)
    if recovered_on == "same host":
        # Only the new mount of a may recover it: b would, from another staging directory.
        assert run("umount", str(b)).returncode == 0
    a_pid = _daemon_pid(tmp_path / "a.log")
    writer = subprocess.Popen(
        [sys.executable, "-c", RACING_WRITER, str(a / "f"), str(tmp_path / "data"), str(CHUNK + 10)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "written\n"
        _kill_mount(run, a, f"(pid {a_pid},")
    finally:
        writer.kill()
        writer.wait()
    if recovered_on == "same host":
        expected = b"X" * (CHUNK + 10) + acknowledged[CHUNK + 10 :]
        again = run("mount", "--store", run.store, "--name", "fs", "-o", "shared", str(a))
    else:
        expected = acknowledged
        cache_c = tmp_path / "cache-c"
        cache_c.mkdir()
        again = run(
            "mount", "--store", run.store, "--name", "fs", "-o", f"shared,cache_dir={cache_c}", str(a)
        )
    assert again.returncode == 0, again.stderr
    eventually(lambda: _equal(a / "f", expected), timeout=60)
    if recovered_on == "same host":  # b fetches what the recovery uploaded
        cache_b = tmp_path / "cache-b"
        again = run(
            "mount", "--store", run.store, "--name", "fs", "-o", f"shared,cache_dir={cache_b}", str(b)
        )
        assert again.returncode == 0, again.stderr
    eventually(lambda: _equal(b / "f", expected), timeout=60)


def _daemon_pid(log: Path) -> int:
    import re

    return int(re.findall(r"(\d+) INFO fusefs.daemon: serving", log.read_text())[-1])


def _remount_b(
    run: Run, b: Path, tmp_path: Path, options: str = "", env: dict[str, str] | None = None
) -> None:
    assert run("umount", str(b)).returncode == 0
    mount_host(run, b, f"shared,cache_dir={tmp_path / 'cache-b'}{options}", tmp_path / "b.log", env)


def test_cache_size_limit_evicts_least_recently_used(hosts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, run = hosts
    _remount_b(run, b, tmp_path, f",cache_size={2 * CHUNK}")
    contents = {f"f{i}": os.urandom(CHUNK) for i in range(4)}
    for name, data in contents.items():
        (a / name).write_bytes(data)
    cache = tmp_path / "cache-b" / "object-cache"
    for name, data in contents.items():
        eventually(lambda name=name, data=data: _equal(b / name, data))
        assert sum(p.stat().st_size for p in cache.iterdir()) <= 2 * CHUNK
    assert len(list(cache.iterdir())) == 2  # the two read last
    with open(b / "f0", "rb") as file:  # evicted: fetched again (the kernel's page cache bypassed)
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert file.read() == contents["f0"]


def test_read_answers_eio_when_the_object_store_is_down(hosts, seaweedfs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import errno

    a, b, run = hosts
    _remount_b(run, b, tmp_path, env={"FUSEFS_FETCH_PATIENCE_S": "2"})
    data = os.urandom(CHUNK)
    (a / "f").write_bytes(data)
    eventually(lambda: _size(b / "f", len(data)))
    seaweedfs.stop()
    try:
        with pytest.raises(OSError) as caught:
            (b / "f").read_bytes()
        assert caught.value.errno == errno.EIO
    finally:
        seaweedfs.start()
    lines = (tmp_path / "b.log").read_text().splitlines()
    # One line per read the kernel sent (it may retry the read itself), and nothing else about it.
    failed = [line for line in lines if "answered EIO" in line]
    assert 1 <= len(failed) <= 2 and all("unreachable" in line for line in failed)
    assert not [line for line in lines if "blocks.tier" in line]
    eventually(lambda: _equal(b / "f", data))


def _size(path: Path, size: int) -> None:
    assert path.stat().st_size == size


def test_a_mount_collects_old_versions_itself(hosts, seaweedfs, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from blocks.objects import DataUrl, ObjectStore, load_credentials

    a, b, run = hosts
    assert run("umount", str(a)).returncode == 0
    env = {"FUSEFS_GC_INTERVAL_S": "0.5", "FUSEFS_OBJECT_GRACE_S": "3"}
    mount_host(run, a, "shared", tmp_path / "a.log", env)
    objects = ObjectStore(
        seaweedfs.endpoint, DataUrl(bucket, "fs"), load_credentials(seaweedfs.credentials_file)
    )
    for _ in range(3):
        data = os.urandom(CHUNK)
        with open(a / "f", "r+b" if (a / "f").exists() else "wb") as file:
            file.write(data)  # the same chunk, a new version at each close
    names = list(objects.names())
    assert len(names) == 3

    def only_the_last() -> None:
        assert len(list(objects.names())) == 1

    eventually(only_the_last, timeout=60)
    eventually(lambda: _equal(b / "f", data))


COPYING_WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"X" * 100, 10)  # a chunk another mount wrote: copied here under a new chunk id
print("written", flush=True)
sys.stdin.read()  # held open until killed
"""


def test_kill_9_after_copying_another_mounts_chunk(hosts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The copy's first version is the acknowledged data: a mount killed after copying a chunk, its
    write staged only, is recovered elsewhere to what was there before."""
    a, b, run = hosts
    acknowledged = os.urandom(2 * CHUNK)
    (a / "f").write_bytes(acknowledged)
    eventually(lambda: _size(b / "f", len(acknowledged)))
    b_pid = _daemon_pid(tmp_path / "b.log")
    writer = subprocess.Popen(
        [sys.executable, "-c", COPYING_WRITER, str(b / "f")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "written\n"
        _kill_mount(run, b, f"(pid {b_pid},")
    finally:
        writer.kill()
        writer.wait()
    cache_c = tmp_path / "cache-c"
    cache_c.mkdir()
    again = run("mount", "--store", run.store, "--name", "fs", "-o", f"shared,cache_dir={cache_c}", str(b))
    assert again.returncode == 0, again.stderr
    eventually(lambda: _equal(b / "f", acknowledged), timeout=60)
    eventually(lambda: _equal(a / "f", acknowledged), timeout=60)


def test_fsck_checks_the_objects_of_chunks_held_elsewhere(hosts, seaweedfs, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """A chunk written through another host's cache directory has no file in the filesystem's block
    directories: fsck checks its object instead (it is no missing chunk), and reports a lost object."""
    a, b, run = hosts
    (b / "big").write_bytes(os.urandom(3 * CHUNK))  # staged in b's cache directory only
    for mnt in (b, a):
        assert run("umount", str(mnt)).returncode == 0
    checked = run("fsck", "--store", run.store, "--name", "fs")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    from blocks.objects import DataUrl, ObjectStore, load_credentials

    objects = ObjectStore(
        seaweedfs.endpoint, DataUrl.parse(f"s3://{bucket}/fs"), load_credentials(seaweedfs.credentials_file)
    )
    objects.delete(next(objects.names()))
    damaged = run("fsck", "--store", run.store, "--name", "fs")
    assert damaged.returncode == 1
    assert "chunk records whose chunk file is missing" in damaged.stdout
    assert "is missing" in damaged.stdout or "no object" in damaged.stdout, damaged.stdout


def test_gc_keeps_the_objects_of_a_clone_whose_original_is_gone(hosts, seaweedfs, bucket: str) -> None:  # type: ignore[no-untyped-def]
    a, b, run = hosts
    from blocks.objects import DataUrl, ObjectStore, load_credentials

    objects = ObjectStore(
        seaweedfs.endpoint, DataUrl(bucket, "fs"), load_credentials(seaweedfs.credentials_file)
    )
    data = os.urandom(3 * CHUNK + 99)
    (a / "orig").write_bytes(data)
    cloned = run("clone", "--store", run.store, "--name", "fs", "/orig", "/copy")
    assert cloned.returncode == 0, cloned.stderr
    os.unlink(a / "orig")  # the chunks' owner keys still name orig's inode: the clone refers to them
    for mnt in (a, b):
        assert run("umount", str(mnt)).returncode == 0
    collected = run("gc", "--store", run.store, "--name", "fs", "--object-grace", "0")
    assert collected.returncode == 0, collected.stderr
    assert len(list(objects.names())) == 4, collected.stdout  # the clone's four chunks
    cache_b = b.parent / "cache-b"
    result = run("mount", "--store", run.store, "--name", "fs", "-o", f"shared,cache_dir={cache_b}", str(b))
    assert result.returncode == 0, result.stderr
    assert (b / "copy").read_bytes() == data  # from the objects: b never held the chunks
    assert chunk_files(cache_b) == []
    with open(b / "copy", "r+b") as file:  # b copies the chunk it writes, from its object
        file.seek(CHUNK + 5)
        file.write(b"c" * 10)
    assert (b / "copy").read_bytes() == data[: CHUNK + 5] + b"c" * 10 + data[CHUNK + 15 :]


@pytest.mark.parametrize("hosts", [2], indirect=True)
def test_a_host_with_fewer_block_directories_deletes_and_truncates(hosts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """b has one (cache) directory; a's chunks are spread over two block directories, so the records
    of some name directory 1, which b does not have: b's deletes and truncates of them drop the records
    (their files on a are garbage for a's gc), as for any chunk b does not hold."""
    a, b, run = hosts
    doomed, shrunk = os.urandom(16 * CHUNK), os.urandom(16 * CHUNK)
    (a / "doomed").write_bytes(doomed)
    (a / "shrunk").write_bytes(shrunk)
    assert chunk_files(tmp_path / "blocks2"), "no chunk landed in a's second block directory"
    eventually(lambda: _equal(b / "shrunk", shrunk))
    os.truncate(b / "shrunk", CHUNK + 10)
    eventually(lambda: _size(b / "doomed", len(doomed)))
    os.unlink(b / "doomed")
    eventually(lambda: _missing(a / "doomed"))
    eventually(lambda: _equal(a / "shrunk", shrunk[: CHUNK + 10]))
    for mnt in (a, b):
        assert run("umount", str(mnt)).returncode == 0
    for log in ("a.log", "b.log"):
        assert "IndexError" not in (tmp_path / log).read_text()
    collected = run("gc", "--store", run.store, "--name", "fs")  # a's files of the dropped chunks
    assert collected.returncode == 0, collected.stderr
    assert "30 unreferenced deleted" in collected.stdout, collected.stdout
    assert len(chunk_files(tmp_path / "blocks")) + len(chunk_files(tmp_path / "blocks2")) == 2


def test_a_sequential_reader_fetches_ahead(hosts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Reading the first chunk on a host that holds none fetches the next READAHEAD_CHUNKS from the
    object store as well, in the background; the kernel's own readahead is off for the file, so every
    other chunk stays where it is."""
    from fusefs.openfile import READAHEAD_CHUNKS

    a, b, _ = hosts
    chunks = 1 + READAHEAD_CHUNKS + 2
    data = os.urandom(chunks * CHUNK)
    (a / "f").write_bytes(data)
    eventually(lambda: _size(b / "f", len(data)))
    cache = tmp_path / "cache-b" / "object-cache"
    fd = os.open(b / "f", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        assert os.pread(fd, 4096, 0) == data[:4096]
    finally:
        os.close(fd)

    def fetched_ahead() -> None:
        assert len(list(cache.iterdir())) == 1 + READAHEAD_CHUNKS

    eventually(fetched_ahead)
    _equal(b / "f", data)  # the rest fetched on demand, the ones ahead served from the cache
    assert len(list(cache.iterdir())) == chunks
