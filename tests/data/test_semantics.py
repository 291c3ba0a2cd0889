"""File-data semantics on a real mount: sparse and huge files, truncate while open, O_APPEND from
several descriptors, visibility of writes across descriptors and processes, space reclaimed on unlink,
statvfs across the block directories."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import SMALL, drop_caches, wait_for

GiB = 1 << 30
MiB = 1 << 20


def _read(path: Path, offset: int, n: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


def _read_uncached(path: Path) -> bytes:
    """The whole file as the daemon serves it (cached pages dropped first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_in_subprocess(path: Path) -> bytes:
    """A new open by another process: what any reader sees now."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())",
                           str(path)], check=True, capture_output=True).stdout


def _chunk_bytes_on_disk(data_mounts, mp: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in data_mounts.chunk_files(mp).values())


# -- sparse and large files ---------------------------------------------------------------------------------
def test_sparse_write_at_6_gib(data_mounts) -> None:
    mp = data_mounts.mount()
    path = mp / "sparse"
    payload = b"end of a sparse file" * 100
    with open(path, "wb") as f:
        f.write(b"head")
        f.seek(6 * GiB)
        f.write(payload)
    size = 6 * GiB + len(payload)
    assert os.stat(path).st_size == size
    for _ in range(2):  # before and after a remount
        assert _read(path, 0, 4) == b"head"
        assert _read(path, 6 * GiB, len(payload)) == payload
        assert _read(path, 6 * GiB - 10, 20) == bytes(10) + payload[:10]
        for offset in (4, 1 * GiB, 4 * GiB - 3, 4 * GiB, 5 * GiB + 12345):
            assert _read(path, offset, 8192) == bytes(8192), f"hole at {offset} is not zeros"
        assert _read(path, size - 5, 100) == payload[-5:]  # short read at the end
        assert _read(path, size + 10, 100) == b""
        # The holes take no space in the block directory.
        assert _chunk_bytes_on_disk(data_mounts, mp) < 16 * MiB
        data_mounts.remount(mp)
        assert os.stat(path).st_size == size


def test_du_of_sparse_file_is_small(data_mounts) -> None:
    mp = data_mounts.mount()
    path = mp / "sparse"
    with open(path, "wb") as f:
        f.seek(6 * GiB)
        f.write(b"x" * 4096)
    os.sync()
    du = subprocess.run(["du", "-k", str(path)], check=True, capture_output=True, text=True).stdout
    assert int(du.split()[0]) < 64 * 1024, f"du reports {du.split()[0]} KiB for a 4 KiB sparse file"


def test_file_over_4_gib_written_across_the_boundary(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    path = mp / "big"
    pattern = os.urandom(3 * 65536 + 123)
    offset = 4 * GiB - 65536 - 7  # straddles 2**32 and several chunks
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.pwrite(fd, pattern, offset) == len(pattern)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(fd, len(pattern), offset) == pattern
        assert os.fstat(fd).st_size == offset + len(pattern)
    finally:
        os.close(fd)
    data_mounts.remount(mp)
    assert _read(path, offset, len(pattern)) == pattern
    assert _read(path, 2**32 - 10, 20) == pattern[2**32 - 10 - offset : 2**32 + 10 - offset]


# -- truncate -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [SMALL, {}], ids=["small-chunks", "default-sizes"])
def test_ftruncate_up_and_down_while_open(data_mounts, settings: dict) -> None:
    mp = data_mounts.mount(**settings)
    path = mp / "t"
    chunk = settings.get("chunk_size", 4 * MiB)
    inline_max = settings.get("inline_max", 64 * 1024)
    data = os.urandom(2 * chunk + 5000)
    writer = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    reader = os.open(path, os.O_RDONLY)
    model = bytearray()
    try:
        os.write(writer, data)
        model[:] = data
        steps = [chunk + 100, inline_max - 1, 3, 0, 10, inline_max + 10, 3 * chunk, chunk - 1, 2 * chunk + 1]
        for new_size in steps:
            os.ftruncate(writer, new_size)
            if new_size < len(model):
                del model[new_size:]
            else:
                model.extend(bytes(new_size - len(model)))
            assert os.fstat(reader).st_size == new_size
            assert os.pread(reader, len(model) + 10, 0) == model, f"after ftruncate to {new_size}"
            # Truncating down then writing past the old end must not resurrect old bytes.
            os.pwrite(writer, b"Z", new_size + 1)
            model.extend(b"\0Z")
            assert os.pread(reader, len(model), 0) == model
            os.fsync(writer)
            os.posix_fadvise(reader, 0, 0, os.POSIX_FADV_DONTNEED)
            assert os.pread(reader, len(model) + 10, 0) == model, f"uncached, after ftruncate to {new_size}"
    finally:
        os.close(writer)
        os.close(reader)
    data_mounts.remount(mp)
    assert path.read_bytes() == model


def test_truncate_by_path_and_o_trunc(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    path = mp / "t"
    path.write_bytes(os.urandom(300_000))
    os.truncate(path, 70_000)
    assert os.stat(path).st_size == 70_000
    assert _read_uncached(path)[65536:] == _read(path, 65536, 10_000)
    with open(path, "wb") as f:  # O_TRUNC
        f.write(b"fresh")
    assert _read_in_subprocess(path) == b"fresh"
    data_mounts.remount(mp)
    assert path.read_bytes() == b"fresh"


# -- several descriptors ------------------------------------------------------------------------------------
def test_o_append_from_two_descriptors(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    path = mp / "log"
    path.write_bytes(b"start\n")
    a = os.open(path, os.O_WRONLY | os.O_APPEND)
    b = os.open(path, os.O_WRONLY | os.O_APPEND)
    expected = bytearray(b"start\n")
    try:
        for i in range(500):
            fd = a if i % 3 else b
            record = f"{'ab'[fd == b]}{i:05d}".encode() * (1 + i % 50) + b"\n"
            assert os.write(fd, record) == len(record)
            expected += record
            assert os.lseek(fd, 0, os.SEEK_CUR) == len(expected)
    finally:
        os.close(a)
        os.close(b)
    assert len(expected) > 65536  # crossed the inline limit and a chunk boundary
    assert path.read_bytes() == expected
    assert _read_uncached(path) == expected


def test_o_append_from_two_processes(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    path = mp / "log"
    path.touch()
    code = (
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
        "tag = sys.argv[2].encode()\n"
        "for i in range(400):\n"
        "    rec = tag + b'%05d' % i + b'.' * 200 + b'\\n'\n"
        "    assert os.write(fd, rec) == len(rec)\n"
        "os.close(fd)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), tag]) for tag in ("A", "B")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == 800
    for tag in (b"A", b"B"):
        mine = [line for line in lines if line.startswith(tag)]
        assert mine == [tag + b"%05d" % i + b"." * 200 for i in range(400)], "an append was lost or torn"


def test_o_append_opened_at_once_by_many_writers_loses_nothing(data_mounts) -> None:
    """Many rounds of the race behind a lost-appends bug: several writers open a closed file at the same
    moment and append to it.  On a shared store the daemon yields while it reads the inode for the
    first open, and two opens once made two in-memory files, each flushing only its own appends."""
    mp = data_mounts.mount(**SMALL)
    writers, records, rounds = 3, 40, 60

    def append(path: Path, tag: bytes, start: threading.Barrier) -> None:
        start.wait()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(records):
                record = tag + b"%03d" % i + b"." * 100 + b"\n"
                assert os.write(fd, record) == len(record)
        finally:
            os.close(fd)

    for round_ in range(rounds):
        path = mp / f"log{round_}"
        path.touch()
        start = threading.Barrier(writers)
        with concurrent.futures.ThreadPoolExecutor(writers) as pool:
            tags = [b"%c" % (65 + n) for n in range(writers)]
            for done in [pool.submit(append, path, tag, start) for tag in tags]:
                done.result()
        lines = path.read_bytes().split(b"\n")[:-1]
        for tag in tags:
            mine = [line for line in lines if line.startswith(tag)]
            assert mine == [tag + b"%03d" % i + b"." * 100 for i in range(records)], f"round {round_}"
        assert len(lines) == writers * records, f"round {round_}: {len(lines)} lines"


@pytest.mark.parametrize("options", [(), ("strict",)], ids=["default", "strict"])
def test_read_sees_every_earlier_write_through_any_descriptor(data_mounts, options) -> None:
    mp = data_mounts.mount(**SMALL, options=options)
    path = mp / "shared"
    fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o644)] + [os.open(path, os.O_RDWR) for _ in range(3)]
    model = bytearray()
    rng = __import__("random").Random(7)
    try:
        for i in range(400):
            writer, reader = rng.choice(fds), rng.choice(fds)
            offset = rng.randrange(0, 300_000)
            data = rng.randbytes(rng.randrange(1, 20_000))
            os.pwrite(writer, data, offset)
            if offset > len(model):
                model.extend(bytes(offset - len(model)))
            model[offset : offset + len(data)] = data
            start = max(0, offset - 100)
            assert os.pread(reader, len(data) + 200, start) == model[start : offset + len(data) + 100], i
            if i % 50 == 0:
                # Another process, with its own open, sees it too, without any fsync.
                assert _read_in_subprocess(path) == model
    finally:
        for fd in fds:
            os.close(fd)


def test_written_and_closed_is_visible_to_a_new_open_at_once(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    for size in (0, 1, 5000, 8192, 8193, 65536, 65537, 1_000_000):
        data = os.urandom(size)
        path = mp / f"f{size}"
        with open(path, "wb") as f:
            f.write(data)
        assert _read_in_subprocess(path) == data, size
        assert os.stat(path).st_size == size
        assert _read_uncached(path) == data, size
    # ...and after being rewritten smaller.
    with open(mp / "f1000000", "wb") as f:
        f.write(b"small now")
    assert _read_in_subprocess(mp / "f1000000") == b"small now"


# -- space ----------------------------------------------------------------------------------------------------
def test_unlink_frees_chunks_by_the_next_mount(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    keep = os.urandom(200_000)
    (mp / "keep").write_bytes(keep)
    kept_chunks = set(data_mounts.chunk_files(mp))
    assert len(kept_chunks) == 4
    (mp / "big").write_bytes(os.urandom(3 * MiB + 1))
    (mp / "open").write_bytes(os.urandom(MiB))
    assert len(data_mounts.chunk_files(mp)) == 4 + 49 + 16
    fd = os.open(mp / "open", os.O_RDONLY)
    try:
        os.unlink(mp / "open")
        os.unlink(mp / "big")
        drop_caches()
        assert len(os.pread(fd, 2 * MiB, 0)) == MiB  # still readable while open
    finally:
        os.close(fd)
    data_mounts.remount(mp)
    assert set(data_mounts.chunk_files(mp)) == kept_chunks
    assert (mp / "keep").read_bytes() == keep


def test_unlink_of_closed_large_file_frees_its_chunks_at_once(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    (mp / "big").write_bytes(os.urandom(3 * MiB + 1))
    assert len(data_mounts.chunk_files(mp)) == 49
    os.unlink(mp / "big")
    drop_caches()  # the kernel forgets the inode; the daemon can then reclaim it
    assert wait_for(lambda: not data_mounts.chunk_files(mp), timeout=10), (
        f"{len(data_mounts.chunk_files(mp))} chunk files left after unlink")


def test_unlink_of_open_file_frees_at_last_close(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    data = os.urandom(1 * MiB)
    (mp / "f").write_bytes(data)
    fd = os.open(mp / "f", os.O_RDONLY)
    try:
        os.unlink(mp / "f")
        drop_caches()
        assert os.pread(fd, len(data), 0) == data  # still readable while open
        assert len(data_mounts.chunk_files(mp)) == 16
    finally:
        os.close(fd)
    drop_caches()
    assert wait_for(lambda: not data_mounts.chunk_files(mp), timeout=10)


def test_truncate_frees_chunks(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    (mp / "f").write_bytes(os.urandom(20 * 65536))
    assert len(data_mounts.chunk_files(mp)) == 20
    os.truncate(mp / "f", 2 * 65536 + 1)
    assert len(data_mounts.chunk_files(mp)) == 3
    os.truncate(mp / "f", 0)
    assert not data_mounts.chunk_files(mp)


def _free(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def test_statvfs_follows_the_block_directory(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, blocks_tmpfs="64m")
    blocks = data_mounts.blocks_dir(mp)
    vfs = os.statvfs(mp)
    assert vfs.f_blocks * vfs.f_frsize == 64 * MiB
    assert abs(_free(mp) - _free(blocks)) <= 64 * 1024
    before = _free(mp)
    (mp / "big").write_bytes(os.urandom(20 * MiB))
    os.sync()
    after_write = _free(mp)
    assert 19 * MiB <= before - after_write <= 22 * MiB, (before, after_write)
    df = subprocess.run(["df", "-k", "--output=used,avail", str(mp)], check=True, capture_output=True,
                        text=True).stdout.split()
    assert int(df[-2]) * 1024 >= 19 * MiB  # df agrees
    assert os.statvfs(mp).f_ffree < vfs.f_ffree  # an inode more in use
    os.unlink(mp / "big")
    data_mounts.remount(mp)
    assert _free(mp) >= before - 256 * 1024, (before, _free(mp))


def test_statvfs_free_space_returns_after_unlink_while_mounted(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, blocks_tmpfs="64m")
    before = _free(mp)
    (mp / "big").write_bytes(os.urandom(20 * MiB))
    os.sync()
    assert before - _free(mp) >= 19 * MiB
    os.unlink(mp / "big")
    drop_caches()
    assert wait_for(lambda: _free(mp) >= before - 256 * 1024, timeout=10), (before, _free(mp))


def test_chunks_spread_over_block_directories_and_statvfs_adds_them_up(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, blocks_tmpfs="32m", block_dirs=2)
    dirs = data_mounts.blocks_dirs(mp)
    assert len(dirs) == 2
    vfs = os.statvfs(mp)
    assert vfs.f_blocks * vfs.f_frsize == 64 * MiB
    assert abs(_free(mp) - _free(dirs[0]) - _free(dirs[1])) <= 128 * 1024
    before = _free(mp)
    data = os.urandom(16 * MiB)
    (mp / "big").write_bytes(data)
    os.sync()
    per_dir = [len(list(d.glob("*/*.chunk"))) for d in dirs]
    assert sum(per_dir) == 256 and min(per_dir) >= 64, f"chunks per directory: {per_dir}"
    assert 15 * MiB <= before - _free(mp) <= 18 * MiB
    assert _read_uncached(mp / "big") == data
    os.unlink(mp / "big")
    drop_caches()
    assert wait_for(lambda: _free(mp) >= before - 256 * 1024, timeout=10), (before, _free(mp))
    assert not data_mounts.chunk_files(mp)
