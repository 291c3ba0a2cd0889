"""Durability and crash consistency: kill -9 the daemon, clear the dead mount, mount again, check.

* Data made durable by fsync/fdatasync (inline and chunked) survives kill -9; so does data written and
  closed (the store's commits and the chunk files' page cache outlive the daemon, not the machine).
* Killed in the middle of a stream of writes, every file reads as a state its writes produced: each
  4 KiB block holds a generation some write gave it (never garbage, never EIO), fsynced generations
  are never lost, sizes are whole blocks.
* Garbage collection after the crash deletes exactly the chunk files no record refers to.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import crash_writer
from .conftest import SMALL

HERE = Path(__file__).resolve().parent
MiB = 1 << 20


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # the daemon behind it is gone


# -- durability ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sync", [os.fsync, os.fdatasync], ids=["fsync", "fdatasync"])
@pytest.mark.parametrize("size", [3000, 8192, 100_000, 3 * MiB + 17], ids=["inline", "inline-max", "chunked",
                                                                           "many-chunks"])
def test_synced_data_survives_kill9(data_mounts, size: int, sync) -> None:
    mp = data_mounts.mount(**SMALL)
    old = os.urandom(size // 2)
    (mp / "f").write_bytes(old)
    new = os.urandom(size)
    fd = os.open(mp / "f", os.O_RDWR)
    os.pwrite(fd, new, 0)
    sync(fd)
    data_mounts.kill(mp)  # with the file still open
    _close_quietly(fd)
    data_mounts.start(mp)
    assert os.stat(mp / "f").st_size == size
    assert (mp / "f").read_bytes() == new


def test_closed_data_survives_kill9(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    files = {f"f{size}": os.urandom(size) for size in (0, 100, 8192, 9000, 65536, 200_000, 2 * MiB)}
    for name, data in files.items():
        (mp / name).write_bytes(data)
    os.mkdir(mp / "d")
    (mp / "d" / "g").write_bytes(b"nested")
    data_mounts.kill(mp)
    data_mounts.start(mp)
    for name, data in files.items():
        assert (mp / name).read_bytes() == data, name
    assert (mp / "d" / "g").read_bytes() == b"nested"
    data_mounts.wait_for_recovery(mp)
    data_mounts.check_consistent(mp)


# -- kill -9 in the middle of writes ----------------------------------------------------------------------------
def _journal(*paths: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(last generation begun, last generation fsynced) per file, over the journals of every run."""
    begun: dict[str, int] = {}
    synced: dict[str, int] = {}
    for line in "".join(path.read_text() for path in paths).splitlines():
        kind, name, generation = line.split()
        (begun if kind == "begin" else synced)[name] = int(generation)
    return begun, synced


def _check_files(mp: Path, journals: list[Path], first_generation: int) -> list[str]:
    """Every way the files differ from a state their writes produced (empty: all fine)."""
    begun, synced = _journal(*journals)
    problems = []
    for name, (file_id, count) in {**crash_writer.FIXED, **crash_writer.GROWING}.items():
        try:
            data = (mp / name).read_bytes()
        except OSError as error:
            problems.append(f"{name}: read failed: {error!r}")
            continue
        if len(data) % crash_writer.BLOCK:
            problems.append(f"{name}: size {len(data)} is not whole blocks")
            continue
        fixed = name in crash_writer.FIXED
        if fixed and len(data) != count * crash_writer.BLOCK:
            problems.append(f"{name}: size {len(data)}, always {count * crash_writer.BLOCK} since its fsync")
            continue
        if not fixed and len(data) > crash_writer.MAX_GROW_BLOCKS * crash_writer.BLOCK:
            problems.append(f"{name}: size {len(data)} larger than ever written")
        lowest = synced.get(name, 0) if fixed else 0
        for index in range(len(data) // crash_writer.BLOCK):
            piece = data[index * crash_writer.BLOCK : (index + 1) * crash_writer.BLOCK]
            try:
                stamp = crash_writer.parse_block(piece)
            except ValueError as error:
                problems.append(f"{name} block {index}: {error}")
                continue
            if stamp is None:
                if fixed:
                    problems.append(f"{name} block {index}: zeros in a file always fully written")
                continue
            got_id, got_index, generation = stamp
            if (got_id, got_index) != (file_id, index):
                problems.append(f"{name} block {index}: holds block {got_index} of file {got_id}")
            elif not lowest <= generation <= begun.get(name, 0):
                problems.append(f"{name} block {index}: generation {generation}, expected "
                                f"{lowest}..{begun.get(name, 0)} (fsynced {synced.get(name)})")
            elif fixed and generation < first_generation:
                problems.append(f"{name} block {index}: generation {generation} from an earlier run")
    return problems


def _run_writer_and_kill(data_mounts, mp: Path, journal: Path, seed: int, generation: int) -> None:
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "crash_writer.py"), str(mp), str(journal), str(seed), str(generation)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        line = writer.stdout.readline().strip()
        assert line == "ready", f"writer said {line!r}"
        time.sleep(random.Random(seed).uniform(0.3, 1.5))
        assert writer.poll() is None, "the writer stopped before the kill"
        data_mounts.kill(mp)
    finally:
        writer.kill()
        writer.wait(timeout=30)


def check_gc_after_crash(data_mounts, mp: Path) -> None:
    """Unmounted: ``fusefs gc`` deletes exactly the chunk files without a record, and no record points to
    a chunk that cannot be read (every file is read afterwards)."""
    data_mounts.unmount(mp)
    before = set(data_mounts.chunk_files(mp))
    referenced = data_mounts.referenced_chunks(mp)
    out = data_mounts.cli(mp, "gc").stdout
    after = set(data_mounts.chunk_files(mp))
    assert after == before & set(referenced), (
        f"gc kept {sorted(after - set(referenced))} (unreferenced) and removed "
        f"{sorted((before & set(referenced)) - after)} (referenced): {out}")
    assert f"{len(before - set(referenced))} unreferenced deleted" in out, out
    data_mounts.start(mp)


@pytest.mark.parametrize("options", [(), ("writeback_cache",)], ids=["default", "writeback"])
def test_kill9_in_the_middle_of_writes(data_mounts, tmp_path: Path, options) -> None:
    mp = data_mounts.mount(**SMALL, options=options)
    seed = int(os.environ.get("CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"crash seed {seed}")
    generation = 0
    journals: list[Path] = []
    for cycle in range(3):
        journals.append(tmp_path / f"journal-{cycle}")
        first = generation + 1
        _run_writer_and_kill(data_mounts, mp, journals[-1], seed + cycle, generation)
        begun, _ = _journal(*journals)
        generation = max(begun.values())
        data_mounts.start(mp)
        # Read at once: recovery runs in the background, and opening a file waits for its chunks.
        problems = _check_files(mp, journals, first)
        data_mounts.wait_for_recovery(mp)
        errors = [line for line in data_mounts.log(mp).splitlines() if " ERROR " in line or " WARNING " in line]
        assert not problems, (f"crash seed {seed}, cycle {cycle}:\n" + "\n".join(problems[:30])
                              + "\ndaemon log:\n" + "\n".join(errors[-20:]))
        assert "Traceback" not in data_mounts.log(mp)
    check_gc_after_crash(data_mounts, mp)
    problems = _check_files(mp, journals, first)
    assert not problems, f"crash seed {seed}, after gc:\n" + "\n".join(problems[:30])
    data_mounts.check_consistent(mp)


# -- targeted interruptions -------------------------------------------------------------------------------------
def test_kill9_while_a_file_moves_from_inline_to_chunks(data_mounts) -> None:
    """The daemon dies after writing a file's first chunks but before recording that it is chunked: the
    file reads as its last inline state, and those chunks are reclaimed, not leaked."""
    mp = data_mounts.mount(**SMALL, options=("strict",))  # strict: each write reaches the daemon at once
    (mp / "f").write_bytes(b"inline " * 500)
    fd = os.open(mp / "f", os.O_RDWR)
    os.pwrite(fd, os.urandom(150_000), 0)  # past the inline limit: three chunks written, not flushed
    assert len(data_mounts.chunk_files(mp)) == 3
    data_mounts.kill(mp)
    _close_quietly(fd)
    data_mounts.start(mp)
    data_mounts.wait_for_recovery(mp)
    assert (mp / "f").read_bytes() == b"inline " * 500
    # Grow it past the limit again: the chunks of the interrupted move must not be orphaned by new ones.
    data = os.urandom(100_000)
    (mp / "f").write_bytes(data)
    assert (mp / "f").read_bytes() == data
    data_mounts.unmount(mp)
    data_mounts.cli(mp, "gc")
    records = data_mounts.referenced_chunks(mp)
    assert set(data_mounts.chunk_files(mp)) == set(records), "chunk files leaked"
    assert len(records) == 2, f"chunk records {records}: expected the two chunks of a 100 kB file"


def test_kill9_after_writing_past_the_end(data_mounts) -> None:
    """Chunks written past a chunked file's recorded size before a kill must not reappear as file data
    when the file is later extended (the hole must read as zeros)."""
    mp = data_mounts.mount(**SMALL, options=("strict",))
    base = os.urandom(100_000)
    (mp / "f").write_bytes(base)
    fd = os.open(mp / "f", os.O_RDWR)
    os.pwrite(fd, b"X" * 65536, 3 * 65536)  # chunk 3, beyond the recorded size; never flushed
    data_mounts.kill(mp)
    _close_quietly(fd)
    data_mounts.start(mp)
    data_mounts.wait_for_recovery(mp)
    assert (mp / "f").read_bytes() == base
    os.truncate(mp / "f", 5 * 65536)
    assert (mp / "f").read_bytes() == base + bytes(5 * 65536 - len(base)), "stale data in the hole"
    with open(mp / "f", "r+b") as f:
        f.seek(6 * 65536)
        f.write(b"end")
    data = (mp / "f").read_bytes()
    assert data == base + bytes(6 * 65536 - len(base)) + b"end", "stale data in the hole"
    data_mounts.check_consistent(mp)


def test_file_read_right_after_mount_is_never_eio(data_mounts) -> None:
    """Recovery rebuilds checksums in the background: a file opened meanwhile waits for its chunks."""
    mp = data_mounts.mount(**SMALL, options=("strict",))
    size = 400 * 65536
    (mp / "f").write_bytes(bytes(size))
    new = os.urandom(size)
    fd = os.open(mp / "f", os.O_RDWR)
    os.pwrite(fd, new, 0)  # every chunk rewritten and dirty, nothing flushed
    data_mounts.kill(mp)
    _close_quietly(fd)
    data_mounts.start(mp)
    with open(mp / "f", "rb") as f:
        f.seek(size - 65536)
        tail = f.read()
    assert tail in (new[-65536:], bytes(65536))
