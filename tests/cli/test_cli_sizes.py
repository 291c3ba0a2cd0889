"""Chunk sizes and inline thresholds every store can hold: mkfs accepts exactly those within the bounds,
files at the bounds round-trip across a remount with no store value over FoundationDB's advised 10 kB,
and settings out of bounds or corrupt fail a mount with one line."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from fusefs.limits import MAX_CHUNK_SIZE_BYTES, MAX_INLINE_MAX_BYTES, RECORD_TARGET_BYTES, chunk_record_bytes
from metadata.keys import FsKeys
from metadata.model import pack
from metadata.namespace import load_config
from metadata.store import MAX_VALUE_BYTES
from metadata.urls import open_store

MiB = 1 << 20


def _mkfs(cli, tmp_path: Path, *options: str, name: str = "A") -> str:
    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    result = cli("mkfs", "--store", url, "--blocks", str(tmp_path / "blocks"), *options, name)
    assert result.returncode == 0, result.stderr
    return url


def test_the_bounds_keep_every_chunk_record_within_the_advised_value_size():
    assert MAX_CHUNK_SIZE_BYTES == 8 * MiB and MAX_INLINE_MAX_BYTES == MiB
    assert chunk_record_bytes(MAX_CHUNK_SIZE_BYTES) <= RECORD_TARGET_BYTES < MAX_VALUE_BYTES
    assert chunk_record_bytes(2 * MAX_CHUNK_SIZE_BYTES) > RECORD_TARGET_BYTES


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--chunk-size", str(8 * MiB + 4096)],
            "--chunk-size must be at most 8 MiB (a chunk's checksum record must stay under 10000 bytes in "
            f"the metadata store), not {8 * MiB + 4096}",
        ),
        (
            ["--chunk-size", "1G"],
            f"--chunk-size must be at most 8 MiB (a chunk's checksum record must stay "
            f"under 10000 bytes in the metadata store), not {1 << 30}",
        ),
        (["--chunk-size", "64G"], f"not {64 << 30}"),
        (["--chunk-size", "0"], "--chunk-size must be a positive multiple of 4 KiB, not 0"),
        (
            ["--chunk-size", "8M", "--inline-max", str(MiB + 1)],
            "--inline-max must be between 0 and the chunk size, and at most 1 MiB (a small file is written "
            f"back in one transaction): at most {MiB} here, not {MiB + 1}",
        ),
        (["--chunk-size", "64K", "--inline-max", "65537"], "at most 65536 here, not 65537"),
    ],
)
def test_mkfs_refuses_sizes_out_of_bounds(cli, tmp_path, options, message):
    url = f"sqlite://{tmp_path}/meta.db"
    result = cli("mkfs", "--store", url, "--blocks", str(tmp_path), *options)
    assert result.returncode == 2
    assert message in result.one_line_error()
    assert not (tmp_path / "meta.db").exists() and not (tmp_path / ".fusefs-blocks").exists()


def test_mkfs_help_gives_the_bounds(cli):
    text = " ".join(cli("mkfs", "--help").stdout.split())
    assert "a multiple of 4 KiB up to 8 MiB" in text
    assert "at most the chunk size and 1 MiB" in text


def test_files_at_the_largest_sizes_round_trip(cli, tmp_path, fuse_mountpoint):
    """The largest accepted chunk size and inline threshold: a file filling several whole chunks and a
    part of one, the largest inline file and the smallest chunked one, read back before and after a
    remount; no value the writes left in the store exceeds the advised 10 kB."""
    url = _mkfs(cli, tmp_path, "--chunk-size", "8M", "--inline-max", "1M")
    files = {
        "chunks": os.urandom(3 * 8 * MiB + 12345),
        "inline": os.urandom(MiB),
        "chunked": os.urandom(MiB + 1),
    }
    assert cli("mount", "--store", url, "--name", "A", str(fuse_mountpoint)).returncode == 0
    for name, data in files.items():
        (fuse_mountpoint / name).write_bytes(data)
    for name, data in files.items():
        assert (fuse_mountpoint / name).read_bytes() == data, name
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    chunk_files = [path for path in (tmp_path / "blocks").glob("*/*.chunk")]
    assert len(chunk_files) == 4 + 1
    assert max(path.stat().st_size for path in chunk_files) == 8 * MiB
    store = open_store(url, read_only=True, exclusive=False)
    try:
        values = store.transact(lambda tr: [v for _, v in tr.get_range(*FsKeys("A").whole_filesystem())])
    finally:
        store.close()
    assert max(len(value) for value in values) <= RECORD_TARGET_BYTES
    assert cli("mount", "--store", url, "--name", "A", str(fuse_mountpoint)).returncode == 0
    for name, data in files.items():
        assert (fuse_mountpoint / name).read_bytes() == data, name
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


def _rewrite_config(url: str, name: str, **changes: object) -> None:
    """Store settings as an older mkfs (or damage) left them."""
    store = open_store(url)
    try:
        raw = load_config(store, name).__dict__ | changes
        store.transact(lambda tr: tr.set(FsKeys(name).config(), pack(raw)))
    finally:
        store.close()


def test_settings_out_of_bounds_are_refused_for_writing_but_readable(cli, tmp_path, fuse_mountpoint):
    """An older mkfs accepted 1 GiB chunks, whose checksum records a large write cannot store."""
    url = _mkfs(cli, tmp_path, "--chunk-size", "64K")
    assert cli("mount", "--store", url, "--name", "A", str(fuse_mountpoint)).returncode == 0
    (fuse_mountpoint / "small").write_text("kept")
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    _rewrite_config(url, "A", chunk_size_bytes=1 << 30)
    marker = tmp_path / "blocks" / ".fusefs-blocks"
    marker.write_text(marker.read_text().replace(str(65536), str(1 << 30)))
    expected = (
        "filesystem 'A' cannot be used: its chunk size must be at most 8 MiB (a chunk's checksum record "
        f"must stay under 10000 bytes in the metadata store), not {1 << 30}; mount it read-only (-o ro) to "
        "copy its files out"
    )
    for command in (["mount", "--name", "A", str(fuse_mountpoint)], ["gc", "--name", "A"]):
        result = cli(*command, "--store", url)
        assert result.returncode == 1, command
        assert result.one_line_error() == expected, command
    assert cli("mount", "--store", url, "--name", "A", "-o", "ro", str(fuse_mountpoint)).returncode == 0
    assert (fuse_mountpoint / "small").read_text() == "kept"
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"chunk_size_bytes": "big"}, "chunk_size_bytes is 'big'"),
        ({"chunk_size_bytes": 0}, "chunk_size_bytes is 0"),
        ({"block_dirs": "/srv"}, "block_dirs is '/srv'"),
        ({"inline_max_bytes": -1, "fs_id": 7}, "inline_max_bytes is -1; fs_id is 7"),
    ],
)
def test_corrupt_settings_fail_a_mount_with_one_line(cli, tmp_path, mountpoint, changes, problem):
    url = _mkfs(cli, tmp_path)
    _rewrite_config(url, "A", **changes)
    for command in (["mount", "--name", "A", str(mountpoint)], ["gc", "--name", "A"]):
        result = cli(*command, "--store", url)
        assert result.returncode == 1, command
        # gc names the store as damaged first (it opens it as a whole), mount the filesystem's settings.
        assert result.one_line_error().endswith(f"corrupt settings of filesystem 'A': {problem}"), command


def test_a_failure_during_recovery_is_one_named_line_and_the_mount_serves(cli, tmp_path, fuse_mountpoint):
    """Recovery runs in the background of a serving mount: a damaged record it meets is named in one
    log line (not "Exceptions from Trio nursery"), and the mount answers meanwhile."""
    url = _mkfs(cli, tmp_path)
    keys = FsKeys("A")
    store = open_store(url)
    try:

        def plant(tr):
            tr.set(keys.chunk(99, 0), b"\xc1")  # not msgpack
            tr.set(keys.dirty_chunk(99, 0), b"")

        store.transact(plant)
    finally:
        store.close()
    result = cli("mount", "--store", url, "--name", "A", str(fuse_mountpoint))
    assert result.returncode == 0, result.stderr
    try:
        (fuse_mountpoint / "f").write_bytes(b"served")
        assert (fuse_mountpoint / "f").read_bytes() == b"served"
        log = Path(re.search(r"log (\S+)\)", result.stdout).group(1))
        deadline = time.monotonic() + 60
        while "corrupt chunk record: FormatError" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "Traceback" not in text and "ExceptionGroup" not in text, text
    finally:
        assert cli("umount", str(fuse_mountpoint)).returncode == 0


@pytest.mark.parametrize(
    ("options", "shown"), [((), "search indexes off"), (("--search-index",), "search indexes on")]
)
def test_mkfs_and_status_show_the_search_index_setting(cli, tmp_path, options, shown):
    url = _mkfs(cli, tmp_path, *options)
    status = cli("status", "--store", url)
    assert status.returncode == 0, status.stderr
    (line,) = [line for line in status.stdout.splitlines() if line.startswith("  A: ")]
    assert line.endswith(f"; {shown}; provenance off")
