"""Garbage collection of chunk files: ``fusefs gc`` (collect_garbage) deletes exactly the chunk files no
chunk record owns; the mount's background collector does the same, and is safe while files are written."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from .conftest import SMALL, wait_for
from .test_fsx import Fsx

MiB = 1 << 20


def _plant_garbage(data_mounts, mp: Path, ids: list[int], directory: Path | None = None) -> list[Path]:
    """Chunk files with ids no record has (as an interrupted write or a lost delete leaves them)."""
    from blocks.layout import chunk_path

    paths = []
    for chunk_id in ids:
        path = Path(chunk_path(str(directory or data_mounts.blocks_dir(mp)), chunk_id))
        path.write_bytes(os.urandom(5000))
        paths.append(path)
    return paths


def test_gc_command_deletes_exactly_the_unreferenced_chunks(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    files = {"a": os.urandom(300_000), "b": os.urandom(MiB), "small": b"inline"}
    for name, data in files.items():
        (mp / name).write_bytes(data)
    data_mounts.unmount(mp)
    live = set(data_mounts.chunk_files(mp))
    assert len(live) == 5 + 16
    garbage = _plant_garbage(data_mounts, mp, [10**9 + k for k in range(7)])
    stranger = data_mounts.blocks_dir(mp) / "00" / "not-a-chunk.tmp"
    stranger.write_bytes(b"left alone")
    out = data_mounts.cli(mp, "gc").stdout.strip()
    assert out.startswith("gc: 28 chunk files scanned, 21 live, 7 unreferenced deleted"), out
    # One line, and with a data tier a second one for the objects.
    assert len(out.splitlines()) == 1 + data_mounts.data_tier, out
    assert set(data_mounts.chunk_files(mp)) == live
    assert not any(path.exists() for path in garbage)
    assert stranger.read_bytes() == b"left alone"
    # A second run finds nothing to do.
    assert "0 unreferenced deleted" in data_mounts.cli(mp, "gc").stdout
    data_mounts.start(mp)
    for name, data in files.items():
        assert (mp / name).read_bytes() == data


def test_gc_refuses_while_mounted(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    (mp / "a").write_bytes(os.urandom(200_000))
    res = data_mounts.cli(mp, "gc", check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"{data_mounts.factory.mounts[mp].name} is mounted (" in res.stderr, res.stderr
    assert "unmount every mount to run gc by hand" in res.stderr, res.stderr
    assert len(data_mounts.chunk_files(mp)) == 4
    data_mounts.unmount(mp)
    assert "4 live, 0 unreferenced deleted" in data_mounts.cli(mp, "gc").stdout


def test_collect_garbage_in_batches(data_mounts) -> None:
    """collect_garbage itself, called as the gc command does, with batches of 3 ids."""
    from fusefs.blockdirs import open_block_store
    from fusefs.gc import collect_garbage
    from metadata.urls import open_store

    mp = data_mounts.mount(**SMALL)
    (mp / "a").write_bytes(os.urandom(10 * 65536))
    data_mounts.unmount(mp)
    live = set(data_mounts.chunk_files(mp))
    garbage = [2**40 + k for k in range(11)]
    _plant_garbage(data_mounts, mp, garbage)
    m = data_mounts.factory.mounts[mp]
    store = open_store(m.store)
    try:
        config, blocks = open_block_store(store, m.name, writable=True)
        try:
            report = collect_garbage(store, config, blocks, batch_ids=3)
        finally:
            blocks.close()
    finally:
        store.close()
    assert (report.scanned, report.live, report.deleted, report.failed) == (21, 10, 11, 0)
    assert report.freed_bytes >= 11 * 4096
    assert "\n" not in str(report) and "11 unreferenced deleted" in str(report)
    assert set(data_mounts.chunk_files(mp)) == live


def test_background_collector_at_mount(data_mounts) -> None:
    """A mount collects garbage once at start (after recovery), without anyone running gc."""
    mp = data_mounts.mount(**SMALL)
    (mp / "a").write_bytes(data := os.urandom(300_000))
    data_mounts.unmount(mp)
    live = set(data_mounts.chunk_files(mp))
    _plant_garbage(data_mounts, mp, [10**12 + k for k in range(5)])
    data_mounts.start(mp)
    assert wait_for(lambda: set(data_mounts.chunk_files(mp)) == live), sorted(data_mounts.chunk_files(mp))
    assert (mp / "a").read_bytes() == data
    assert "gc: 10 chunk files scanned, 5 live, 5 unreferenced deleted" in data_mounts.log(mp)


def test_background_collector_is_safe_under_writes(data_mounts) -> None:
    """Collecting every 50 ms while a randomized writer moves files across the inline limit and chunk
    boundaries, truncates and appends: no live chunk is ever taken, and planted garbage goes."""
    mp = data_mounts.mount(**SMALL, env={"FUSEFS_GC_INTERVAL_S": "0.05"})
    seed = random.SystemRandom().randrange(2**32)
    print(f"fsx seed {seed}")
    writers = [Fsx(mp / f"w{i}", seed + i, inline_max=8192, chunk_size=65536, max_size=600_000)
               for i in range(2)]
    deadline = time.monotonic() + 8
    planted: list[Path] = []
    try:
        while time.monotonic() < deadline:
            for fsx in writers:
                fsx.run(100, deadline, minimum=0)
            planted += _plant_garbage(data_mounts, mp, [random.randrange(2**50, 2**60)])
    finally:
        for fsx in writers:
            fsx.close()
    data_mounts.remount(mp)
    for fsx in writers:
        fsx.verify_all("after remount")
    assert "unreferenced deleted" in data_mounts.log(mp), "the collector never ran"
    assert wait_for(lambda: not any(path.exists() for path in planted)), "planted garbage left"
    data_mounts.unmount(mp)
    referenced = data_mounts.referenced_chunks(mp)
    on_disk = set(data_mounts.chunk_files(mp))
    assert on_disk <= set(referenced), f"garbage left: {sorted(on_disk - set(referenced))[:10]}"


def test_gc_covers_every_block_directory(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, block_dirs=2)
    (mp / "a").write_bytes(data := os.urandom(2 * MiB))
    data_mounts.unmount(mp)
    live = set(data_mounts.chunk_files(mp))
    planted = [path for n, d in enumerate(data_mounts.blocks_dirs(mp))
               for path in _plant_garbage(data_mounts, mp, [10**15 + n], d)]
    out = data_mounts.cli(mp, "gc").stdout
    assert "2 unreferenced deleted" in out, out
    assert not any(path.exists() for path in planted)
    assert set(data_mounts.chunk_files(mp)) == live
    data_mounts.start(mp)
    assert (mp / "a").read_bytes() == data
