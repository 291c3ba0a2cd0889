"""Uploads as chunks fill, and the bounded staging area, on real mounts against a real SeaweedFS that is
stopped in the middle of a write (tests/objects/test_objects_mounts.py has the two-host fixture)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from blocks.objects import DataUrl, ObjectStore, load_credentials, parse_object_name
from blocks.staging import StagingBudget, StagingFull

from .conftest import CHUNK
from .test_objects_mounts import _equal, _remount_b, chunk_files, eventually

#: Writes CHUNK-sized pieces of argv[2] to a new file argv[1], saying after each write and at close
#: whether it succeeded ("wrote N" / "close ok", or the errno name); holds the file open after the
#: writes until a line arrives on stdin.
PIECE_WRITER = """
import errno, os, sys
data = open(sys.argv[2], "rb").read()
piece = int(sys.argv[3])
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for n, start in enumerate(range(0, len(data), piece), 1):
    try:
        os.write(fd, data[start : start + piece])
    except OSError as error:
        print("write", errno.errorcode[error.errno], flush=True)
        break
    print("wrote", n, flush=True)
sys.stdin.readline()
try:
    os.close(fd)
    print("close ok", flush=True)
except OSError as error:
    print("close", errno.errorcode[error.errno], flush=True)
"""


class Writer:
    """PIECE_WRITER in a child process (a descriptor of the file in this one would be closed, a FUSE
    flush, by every program the test starts), its output collected by a thread."""

    def __init__(self, path: Path, data_file: Path, piece: int = CHUNK) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", PIECE_WRITER, str(path), str(data_file), str(piece)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 120) -> list[str]:
        self.process.wait(timeout)
        self._reader.join(timeout)
        return self.lines

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def _objects(seaweedfs, bucket: str) -> ObjectStore:  # type: ignore[no-untyped-def]
    return ObjectStore(
        seaweedfs.endpoint, DataUrl(bucket, "fs"), load_credentials(seaweedfs.credentials_file)
    )


def test_full_chunks_are_uploaded_before_close(hosts, seaweedfs, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A chunk is uploaded as soon as a write fills it; close then records those uploads without
    uploading them again, and only the last, partial chunk is uploaded by the close."""
    a, b, _ = hosts
    objects = _objects(seaweedfs, bucket)
    data = os.urandom(4 * CHUNK + 100)
    (tmp_path / "data").write_bytes(data)
    writer = Writer(a / "f", tmp_path / "data")
    try:
        eventually(lambda: _lines_are(writer, 5))

        def four_uploaded() -> None:
            names = [parse_object_name(name) for name in objects.names()]
            assert len(names) == 4 and all(names)

        eventually(four_uploaded)  # the file is still open: nothing was closed or fsynced
        writer.close()
        assert writer.finish()[-1] == "close ok"
    finally:
        writer.kill()
    assert len(list(objects.names())) == 5  # the four sealed ones, and the tail at close
    eventually(lambda: _equal(b / "f", data))


def test_staging_fills_then_writes_wait_for_the_object_store(hosts, seaweedfs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With the object store stopped mid-write, a writer stages up to the limit (two chunks) and then
    waits; once the store is back, the uploads go through, the write completes, and the other host reads
    exactly what was written."""
    a, b, run = hosts
    _remount_b(run, b, tmp_path, f",staging_size={2 * CHUNK}")
    data = os.urandom(6 * CHUNK)
    (tmp_path / "data").write_bytes(data)
    seaweedfs.stop()
    try:
        writer = Writer(b / "f", tmp_path / "data")
        eventually(lambda: _lines_are(writer, 2))
        time.sleep(1.0)  # a write past the limit would have been answered by now: it waits
        assert writer.lines == ["wrote 1", "wrote 2"]
        assert len(chunk_files(tmp_path / "cache-b")) == 2  # the third chunk was not even staged
    finally:
        seaweedfs.start()
    try:
        eventually(lambda: _lines_are(writer, 6), timeout=120)
        writer.close()
        assert writer.finish()[-1] == "close ok"
    finally:
        writer.kill()
    eventually(lambda: _equal(a / "f", data))
    assert "staging full" not in (tmp_path / "b.log").read_text()


def test_a_write_waiting_for_staging_fails_past_the_patience(hosts, seaweedfs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The object store stays down: the write that waits for staging room fails with EIO after the
    upload patience (one line in the log), close fails too, what an earlier close acknowledged is
    intact, and the mount keeps working once the store is back."""
    a, b, run = hosts
    _remount_b(run, b, tmp_path, f",staging_size={CHUNK}", env={"FUSEFS_UPLOAD_PATIENCE_S": "2"})
    acknowledged = os.urandom(2 * CHUNK + 5)
    (b / "acknowledged").write_bytes(acknowledged)
    (tmp_path / "data").write_bytes(os.urandom(3 * CHUNK))
    seaweedfs.stop()
    try:
        writer = Writer(b / "g", tmp_path / "data")
        eventually(lambda: _lines_are(writer, 2), timeout=60)
        assert writer.lines == ["wrote 1", "write EIO"]
        writer.close()
        assert writer.finish()[-1] == "close EIO"
    finally:
        seaweedfs.start()
        writer.kill()
    log = (tmp_path / "b.log").read_text()
    assert len([line for line in log.splitlines() if "staging full" in line]) == 1, log
    eventually(lambda: _equal(a / "acknowledged", acknowledged))
    after = os.urandom(3 * CHUNK)
    (b / "after").write_bytes(after)
    eventually(lambda: _equal(a / "after", after))


def _lines_are(writer: Writer, count: int) -> None:
    assert len(writer.lines) >= count, writer.lines


# -- the staging budget itself ------------------------------------------------------------------------


def test_staging_budget_reserves_up_to_its_limit() -> None:
    budget = StagingBudget(3 * CHUNK)
    first = budget.try_reserve(2 * CHUNK)
    assert first is not None and budget.try_reserve(2 * CHUNK) is None
    second = budget.try_reserve(CHUNK)
    assert second is not None and budget.used_bytes == 3 * CHUNK
    first.release()
    first.release()  # once only
    assert budget.used_bytes == CHUNK
    over = budget.reserve_now(5 * CHUNK)  # bytes staged already, being uploaded
    assert budget.used_bytes == 6 * CHUNK
    over.release()
    second.release()
    assert budget.used_bytes == 0
    assert budget.try_reserve(10 * CHUNK) is not None  # larger than the limit, but nothing is staged


def test_staging_budget_waits_for_room_then_gives_up() -> None:
    budget = StagingBudget(CHUNK)
    held = budget.try_reserve(CHUNK)
    assert held is not None
    releaser = threading.Timer(0.2, held.release)
    releaser.start()
    assert budget.reserve(CHUNK, patience_s=60) is not None  # woken by the release
    with pytest.raises(StagingFull) as caught:
        budget.reserve(CHUNK, patience_s=0.1)
    assert caught.value.errno == errno.EIO and "staging full" in str(caught.value)
