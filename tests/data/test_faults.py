"""Faults: a chunk changed on disk reads as EIO (never wrong data) with a log line naming inode and chunk;
a full block directory gives the writer ENOSPC and harms no other file; an unusable block directory makes
the mount command fail with one line."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import SMALL, drop_caches

MiB = 1 << 20
BLOCK = 4096


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def _chunk_of(data_mounts, mp: Path, before: set[int]) -> list[int]:
    return sorted(set(data_mounts.chunk_files(mp)) - before)


def _expect_eio(path: Path, offset: int, n: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        with pytest.raises(OSError) as raised:
            os.pread(fd, n, offset)
        assert raised.value.errno == errno.EIO, raised.value
    finally:
        os.close(fd)


def _pread(path: Path, offset: int, n: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


# -- corruption -------------------------------------------------------------------------------------------------
def test_flipped_byte_while_unmounted_reads_as_eio(data_mounts) -> None:
    data_mounts.expect_errors(r"checksum mismatch in chunk \d+ block \d+")
    mp = data_mounts.mount(**SMALL)
    (mp / "other").write_bytes(other := os.urandom(100_000))
    before = set(data_mounts.chunk_files(mp))
    data = os.urandom(3 * 65536)
    (mp / "f").write_bytes(data)
    ino = os.stat(mp / "f").st_ino
    chunks = _chunk_of(data_mounts, mp, before)
    assert len(chunks) == 3
    data_mounts.unmount(mp)
    # chunk ids are allocated in order: the second one holds file offsets 64 KiB..128 KiB
    victim = chunks[1]
    _flip_byte(data_mounts.chunk_files(mp)[victim], 5 * BLOCK + 123)
    data_mounts.start(mp)
    path = mp / "f"
    drop_caches()
    with pytest.raises(OSError) as raised:  # read to the end: a short read, then EIO at the bad block
        path.read_bytes()
    assert raised.value.errno == errno.EIO
    _expect_eio(path, 65536 + 5 * BLOCK + 100, 50)  # just around the flipped byte
    # Blocks around it are intact and readable: the damage is confined to one 4 KiB block.
    assert _pread(path, 0, 65536 + 5 * BLOCK) == data[: 65536 + 5 * BLOCK]
    assert _pread(path, 65536 + 6 * BLOCK, 10 * BLOCK) == data[65536 + 6 * BLOCK : 65536 + 16 * BLOCK]
    assert (mp / "other").read_bytes() == other
    log = data_mounts.log(mp)
    lines = [line for line in log.splitlines() if f"inode {ino}" in line and f"chunk {victim}" in line]
    assert lines, f"no log line names inode {ino} and chunk {victim}:\n{log[-3000:]}"
    assert "checksum" in lines[0]


def test_flipped_byte_while_mounted_reads_as_eio(data_mounts) -> None:
    data_mounts.expect_errors(r"checksum mismatch in chunk \d+ block \d+")
    mp = data_mounts.mount(**SMALL)
    data = os.urandom(2 * 65536)
    (mp / "f").write_bytes(data)
    ino = os.stat(mp / "f").st_ino
    assert _pread(mp / "f", 0, len(data)) == data
    chunk_id, chunk_path = max(data_mounts.chunk_files(mp).items())
    _flip_byte(chunk_path, 40_000)
    drop_caches()  # the page cache of the mount must not answer from before the damage
    _expect_eio(mp / "f", 65536 + 40_000 - 10, 20)
    assert _pread(mp / "f", 0, 65536) == data[:65536]
    assert f"inode {ino}, chunk {chunk_id}" in data_mounts.log(mp)


def test_missing_chunk_file_reads_as_eio(data_mounts) -> None:
    """Without a data tier; with one, the chunk is fetched from the object store again."""
    data_mounts.expect_errors(r"answered EIO: chunk \d+ is missing")
    mp = data_mounts.mount(**SMALL)
    data = os.urandom(2 * 65536)
    (mp / "f").write_bytes(data)
    data_mounts.unmount(mp)
    chunk_id, chunk_path = max(data_mounts.chunk_files(mp).items())
    chunk_path.unlink()
    data_mounts.start(mp)
    if data_mounts.data_tier:
        assert _pread(mp / "f", 65536, 100) == data[65536 : 65536 + 100]
        return
    _expect_eio(mp / "f", 65536, 100)
    assert _pread(mp / "f", 0, 65536) == data[:65536]
    assert f"chunk {chunk_id} is missing" in data_mounts.log(mp)


# -- a full block directory ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [(), ("writeback_cache",)], ids=["default", "writeback"])
def test_full_block_directory_gives_enospc_and_harms_nothing_else(data_mounts, options) -> None:
    data_mounts.expect_errors(r"answered ENOSPC: no space left in block directories")
    mp = data_mounts.mount(**SMALL, blocks_tmpfs="8m", options=options)
    keep = {"small": os.urandom(3000), "chunked": os.urandom(300_000), "big": os.urandom(2 * MiB)}
    for name, data in keep.items():
        (mp / name).write_bytes(data)
    written = 0
    failure = None
    fd = os.open(mp / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    piece = os.urandom(256 * 1024)
    try:
        for _ in range(64):  # 16 MiB into 8 MiB
            written += os.write(fd, piece)
        os.fsync(fd)
    except OSError as error:
        failure = error
    finally:
        try:
            os.close(fd)
        except OSError as error:
            failure = failure or error
    assert failure is not None and failure.errno == errno.ENOSPC, f"expected ENOSPC, got {failure!r}"
    # Other files are intact (from the daemon, not the page cache), and small files still work: they
    # live in the metadata store, not in the full block directory.
    drop_caches()
    for name, data in keep.items():
        assert (mp / name).read_bytes() == data, name
    (mp / "note").write_bytes(b"still writable inline")
    assert (mp / "note").read_bytes() == b"still writable inline"
    # The filler reads without error as what was written (possibly cut short): never garbage or EIO.
    filler = (mp / "filler").read_bytes()
    assert all(filler[i : i + len(piece)] == piece[: len(filler) - i] for i in range(0, len(filler), len(piece)))
    # Free the space: writing works again, and a remount finds everything in order.
    os.unlink(mp / "filler")
    data_mounts.remount(mp)
    (mp / "after").write_bytes(after := os.urandom(MiB))
    for name, data in {**keep, "after": after}.items():
        assert (mp / name).read_bytes() == data, name
    assert "Traceback" not in data_mounts.log(mp)
    data_mounts.check_consistent(mp)


# -- an unusable block directory at mount -------------------------------------------------------------------
def _mount_command(data_mounts, mp: Path) -> subprocess.CompletedProcess:
    m = data_mounts.factory.mounts[mp]
    cmd = [sys.executable, "-m", "fusefs", "mount", "--store", m.store, "--name", m.name,
           "--log-file", str(m.workdir / "failed-mount.log"), str(mp)]
    return subprocess.run(cmd, cwd=m.workdir, env=data_mounts.factory._env(m), capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("damage", ["missing", "not-a-directory", "read-only"])
def test_unusable_block_directory_fails_the_mount_with_one_line(data_mounts, damage: str) -> None:
    mp = data_mounts.mount(**SMALL, blocks_tmpfs="4m" if damage == "read-only" else None)
    (mp / "f").write_bytes(os.urandom(100_000))
    data_mounts.unmount(mp)
    blocks = data_mounts.blocks_dir(mp)
    if damage == "missing":
        subprocess.run(["rm", "-rf", str(blocks)], check=True)
    elif damage == "not-a-directory":
        subprocess.run(["rm", "-rf", str(blocks)], check=True)
        blocks.write_text("not a directory")
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(blocks)], check=True)
    res = _mount_command(data_mounts, mp)
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("fusefs: error: block directory") and str(blocks) in lines[0], lines[0]
    assert "Traceback" not in res.stderr
    assert data_mounts.factory.mounts[mp].proc is None and os.path.ismount(mp) is False


def test_a_failing_background_service_does_not_unmount(data_mounts) -> None:
    """A corrupt change-log record makes the log-trimming service fail at mount: it is logged and
    retried, and the filesystem stays mounted and usable."""
    data_mounts.expect_errors(r"_trim_records failed \(CorruptValue: corrupt change-log record")
    import sqlite3

    from metadata.keys import FsKeys

    mp = data_mounts.mount()
    (mp / "f").write_bytes(b"kept")
    data_mounts.unmount(mp)
    begin, end = FsKeys(data_mounts._m(mp).name).log()
    with sqlite3.connect(data_mounts.store_path(mp)) as db:
        (key,) = db.execute("SELECT k FROM kv WHERE k >= ? AND k < ? LIMIT 1", (begin, end)).fetchone()
        db.execute("UPDATE kv SET v = ? WHERE k = ?", (b"\xc1 not msgpack", key))
    data_mounts.start(mp)
    deadline = time.monotonic() + 20
    while "background service _trim_records failed" not in data_mounts.log(mp):
        assert time.monotonic() < deadline, "the trimming service never reached the corrupt record"
        time.sleep(0.1)
    assert (mp / "f").read_bytes() == b"kept"
    (mp / "g").write_bytes(b"new")
    assert sorted(os.listdir(mp)) == ["f", "g"]


def test_a_corrupt_metadata_value_is_eio_and_the_mount_survives(data_mounts) -> None:
    """A value in the store that does not decode (here an inode's attributes) makes operations on that
    inode fail with EIO and a log line naming it; the rest of the filesystem keeps working."""
    data_mounts.expect_errors(r"corrupt attributes of inode \d+")
    import sqlite3

    from metadata.keys import FsKeys

    mp = data_mounts.mount()
    (mp / "bad").write_bytes(b"x")
    (mp / "good").write_bytes(b"fine")
    bad_ino = os.stat(mp / "bad").st_ino
    data_mounts.unmount(mp)
    with sqlite3.connect(data_mounts.store_path(mp)) as db:
        key = FsKeys(data_mounts._m(mp).name).attr(bad_ino)
        assert db.execute("UPDATE kv SET v = ? WHERE k = ?", (b"\x93garbage", key)).rowcount == 1
    data_mounts.start(mp)
    with pytest.raises(OSError) as failure:
        os.stat(mp / "bad")
    assert failure.value.errno == errno.EIO
    assert f"corrupt attributes of inode {bad_ino}" in data_mounts.log(mp)
    assert (mp / "good").read_bytes() == b"fine"
    (mp / "new").write_bytes(b"still writable")
    assert sorted(os.listdir(mp)) == ["good", "new"]  # the damaged entry is left out, and logged
