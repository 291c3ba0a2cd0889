"""Block directories belong to one filesystem, end to end through the command line and real mounts:
mkfs and blocks add refuse a directory another filesystem owns; mount, gc and a running mount's
collector refuse (and delete nothing in) a directory whose marker is missing or foreign; a filesystem
made before ids existed is adopted at its first read-write mount."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import fdb.tuple
import pytest
from fusefs_cli_helpers import mounted_type

from blocks.layout import chunk_path
from metadata.keys import FORMAT_VERSION, FsKeys
from metadata.model import FsConfig, pack, unpack
from metadata.namespace import load_config
from metadata.urls import open_store

MARKER = ".fusefs-blocks"
LARGE = 300_000  # above the 64 KiB inline threshold: stored in a chunk file


def _url(tmp_path: Path, store: str = "meta") -> str:
    return f"sqlite://{tmp_path}/{store}.db"


def _mkfs(cli, url: str, blocks: Path, name: str) -> None:
    blocks.mkdir(exist_ok=True)
    result = cli("mkfs", "--store", url, "--blocks", str(blocks), name)
    assert result.returncode == 0, result.stderr


def _config(url: str, name: str) -> FsConfig:
    store = open_store(url)
    try:
        return load_config(store, name)
    finally:
        store.close()


def _fs_id(url: str, name: str) -> str:
    store = open_store(url, read_only=True, exclusive=False)
    try:
        return load_config(store, name).fs_id
    finally:
        store.close()


def _describe(url: str, name: str) -> str:
    return f"filesystem '{name}' (id {_fs_id(url, name)}) of {url}"


def _marker(blocks: Path) -> dict:
    return json.loads((blocks / MARKER).read_text())


def _write_files(cli, url: str, name: str, mountpoint: Path) -> bytes:
    assert cli("mount", "--store", url, "--name", name, str(mountpoint)).returncode == 0
    data = os.urandom(LARGE)
    (mountpoint / "large").write_bytes(data)
    (mountpoint / "small").write_text("small")
    assert cli("umount", str(mountpoint)).returncode == 0
    return data


def _check_files(cli, url: str, name: str, mountpoint: Path, data: bytes, *options: str) -> None:
    result = cli("mount", "--store", url, "--name", name, *options, str(mountpoint))
    assert result.returncode == 0, result.stderr
    assert (mountpoint / "large").read_bytes() == data
    assert (mountpoint / "small").read_text() == "small"
    assert cli("umount", str(mountpoint)).returncode == 0


def _bind(source: Path, target: Path) -> None:
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True, capture_output=True)


@pytest.fixture
def binds():
    """Bind mounts (a disk mounted, or not, at a block directory), undone at teardown."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    made: list[Path] = []

    def bind(source: Path, target: Path) -> None:
        _bind(source, target)
        made.append(target)

    yield bind
    for target in reversed(made):
        while mounted_type(target) is not None and subprocess.run(["umount", str(target)]).returncode == 0:
            pass


def test_a_block_directory_is_claimed_by_one_filesystem_only(cli, tmp_path):
    url, other_url = _url(tmp_path), _url(tmp_path, "other")
    blocks = tmp_path / "blocks"
    _mkfs(cli, url, blocks, "A")
    refusal = (
        f"block directory {blocks} already belongs to {_describe(url, 'A')}: "
        "give each filesystem its own block directory"
    )
    # Twice in one store, and across two store files.
    for store in (url, other_url):
        result = cli("mkfs", "--store", store, "--blocks", str(blocks), "A2")
        assert result.returncode == 1
        assert result.one_line_error() == refusal
    # blocks add of it to another filesystem.
    _mkfs(cli, url, tmp_path / "blocks2", "B")
    result = cli("blocks", "add", "--store", url, "--name", "B", str(blocks))
    assert result.returncode == 1
    assert result.one_line_error() == refusal
    status = cli("status", "--store", url).stdout
    assert "2 filesystem(s)" in status and "A2" not in status
    assert f"B: blocks {tmp_path}/blocks2;" in status
    assert "0 filesystem(s)" in cli("status", "--store", other_url).stdout
    assert _marker(blocks)["fs_id"] == _fs_id(url, "A")
    assert _marker(blocks)["name"] == "A" and _marker(blocks)["store"] == url


def test_mkfs_and_blocks_add_record_the_owner_in_the_marker(cli, tmp_path):
    url = _url(tmp_path)
    _mkfs(cli, url, tmp_path / "blocks", "A")
    extra = tmp_path / "extra"
    extra.mkdir()
    assert cli("blocks", "add", "--store", url, "--name", "A", str(extra)).returncode == 0
    fs_id = _fs_id(url, "A")
    assert len(fs_id) == 36  # a uuid4
    for blocks in (tmp_path / "blocks", extra):
        assert _marker(blocks) == {
            "format": 2,
            "chunk_size": 4 << 20,
            "fs_id": fs_id,
            "name": "A",
            "store": url,
        }
    _mkfs(cli, url, tmp_path / "blocks-b", "B")
    assert _fs_id(url, "B") not in ("", fs_id)


def test_a_failed_mkfs_leaves_no_directory_claimed(cli, tmp_path):
    url = _url(tmp_path)
    good = tmp_path / "good"
    good.mkdir()
    for second, message in [
        (tmp_path / "missing", f"block directory '{tmp_path}/missing' is unusable: it does not exist"),
        (good, f"block directory '{good}' is unusable: it is already block directory 0 ({good})"),
    ]:
        result = cli("mkfs", "--store", url, "--blocks", str(good), "--blocks", str(second), "A")
        assert result.returncode == 1
        assert result.one_line_error() == message
        assert not (good / MARKER).exists()
    _mkfs(cli, url, good, "A")  # the directory is still free


def test_a_block_directory_whose_disk_is_not_mounted_is_refused(cli, tmp_path, fuse_mountpoint, binds):
    """The disk holding the chunks failed to mount: its mountpoint shows as an empty directory, which
    must not be written to (new chunks there, the old files EIO) or collected."""
    url, disk, blocks = _url(tmp_path), tmp_path / "disk", tmp_path / "blocks"
    disk.mkdir()
    blocks.mkdir()
    binds(disk, blocks)
    _mkfs(cli, url, blocks, "A")
    data = _write_files(cli, url, "A", fuse_mountpoint)
    subprocess.run(["umount", str(blocks)], check=True)
    expected = (
        f"block directory {blocks} has no fusefs marker (.fusefs-blocks): is the disk mounted? "
        f"It should hold the chunks of {_describe(url, 'A')}"
    )
    for command in (
        ["mount", "--store", url, "--name", "A", str(fuse_mountpoint)],
        ["mount", "--store", url, "--name", "A", "-o", "ro", str(fuse_mountpoint)],
        ["gc", "--store", url, "--name", "A"],
    ):
        result = cli(*command)
        assert result.returncode == 1, command
        assert result.one_line_error() == expected, command
        assert mounted_type(fuse_mountpoint) is None
    assert os.listdir(blocks) == []
    binds(disk, blocks)  # the disk is back: everything is there
    _check_files(cli, url, "A", fuse_mountpoint, data)


def test_a_block_directory_of_another_filesystem_is_refused(cli, tmp_path, fuse_mountpoint, binds):
    """B's disk mounted where A's should be: A must neither use nor collect it."""
    url = _url(tmp_path)
    a_blocks, b_blocks = tmp_path / "a", tmp_path / "b"
    _mkfs(cli, url, a_blocks, "A")
    _mkfs(cli, url, b_blocks, "B")
    a_data = _write_files(cli, url, "A", fuse_mountpoint)
    b_data = _write_files(cli, url, "B", fuse_mountpoint)
    binds(b_blocks, a_blocks)
    expected = (
        f"block directory {a_blocks} belongs to {_describe(url, 'B')}, not to {_describe(url, 'A')}: "
        "check which disk is mounted there and the block directories of each filesystem (fusefs status)"
    )
    for command in (
        ["mount", "--store", url, "--name", "A", str(fuse_mountpoint)],
        ["mount", "--store", url, "--name", "A", "-o", "ro", str(fuse_mountpoint)],
        ["gc", "--store", url, "--name", "A"],
    ):
        result = cli(*command)
        assert result.returncode == 1, command
        assert result.one_line_error() == expected, command
    subprocess.run(["umount", str(a_blocks)], check=True)
    _check_files(cli, url, "B", fuse_mountpoint, b_data)
    _check_files(cli, url, "A", fuse_mountpoint, a_data)


def test_a_running_mount_collects_nothing_in_a_directory_no_longer_its_own(cli, tmp_path, fuse_mountpoint):
    url = _url(tmp_path)
    a_blocks, b_blocks = tmp_path / "a", tmp_path / "b"
    _mkfs(cli, url, a_blocks, "A")
    _mkfs(cli, url, b_blocks, "B")
    cli.env["FUSEFS_GC_INTERVAL_S"] = "0.1"
    assert cli("mount", "--store", url, "--name", "A", str(fuse_mountpoint)).returncode == 0
    data = os.urandom(LARGE)
    (fuse_mountpoint / "large").write_bytes(data)
    own_marker = (a_blocks / MARKER).read_bytes()
    shutil.copy(b_blocks / MARKER, a_blocks / "marker.tmp")
    os.replace(a_blocks / "marker.tmp", a_blocks / MARKER)  # as if B's disk were mounted there now
    garbage = Path(chunk_path(str(a_blocks), 2**40))
    garbage.write_bytes(b"not referenced by A")
    log = cli.data_dir / "A.log"
    expected = f"garbage collection failed: block directory {a_blocks} belongs to {_describe(url, 'B')}"
    _wait_for(lambda: expected in log.read_text(), "the collector never met the foreign marker")
    assert garbage.exists()
    (a_blocks / "marker.tmp").write_bytes(own_marker)
    os.replace(a_blocks / "marker.tmp", a_blocks / MARKER)
    _wait_for(
        lambda: not garbage.exists(), "the collector never deleted the garbage once the marker was back"
    )
    assert (fuse_mountpoint / "large").read_bytes() == data
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


def _wait_for(condition, message: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _make_old_format(url: str, name: str, blocks: Path) -> None:
    """Turn a filesystem into one made before ids: settings without ``fs_id`` and a marker without an
    owner, written as the code of that time wrote them."""
    store = open_store(url)
    try:
        config = load_config(store, name)
        old = {
            "name": config.name,
            "block_dirs": config.block_dirs,
            "inline_max_bytes": config.inline_max_bytes,
            "chunk_size_bytes": config.chunk_size_bytes,
            "log_retention_s": config.log_retention_s,
            "created_ns": config.created_ns,
        }
        store.transact(lambda tr: tr.set(FsKeys(name).config(), pack(old)))
    finally:
        store.close()
    with open(blocks / MARKER, "w", encoding="utf-8") as file:
        json.dump({"format": 1, "chunk_size": config.chunk_size_bytes}, file)


def test_a_filesystem_made_before_ids_is_adopted_at_its_first_read_write_mount(
    cli, tmp_path, fuse_mountpoint
):
    url, blocks = _url(tmp_path), tmp_path / "blocks"
    _mkfs(cli, url, blocks, "A")
    data = _write_files(cli, url, "A", fuse_mountpoint)
    _make_old_format(url, "A", blocks)
    assert _fs_id(url, "A") == ""
    read_only = cli("mount", "--store", url, "--name", "A", "-o", "ro", str(fuse_mountpoint))
    assert read_only.returncode == 1
    assert read_only.one_line_error() == (
        "filesystem 'A' was made by an older fusefs and has no id yet: mount it read-write once "
        "(without -o ro), which gives it one and adopts its block directories"
    )
    claim = cli("mkfs", "--store", url, "--blocks", str(blocks), "B")
    assert claim.returncode == 1
    assert claim.one_line_error() == (
        f"block directory {blocks} already belongs to a filesystem made by an older fusefs (its marker "
        "names no owner): give each filesystem its own block directory"
    )
    _check_files(cli, url, "A", fuse_mountpoint, data)
    fs_id = _fs_id(url, "A")
    assert len(fs_id) == 36
    assert _config(url, "A").format_version == FORMAT_VERSION  # migrated from format 1 as well
    assert _marker(blocks) == {"format": 2, "chunk_size": 4 << 20, "fs_id": fs_id, "name": "A", "store": url}
    assert f"adopted by filesystem 'A' (id {fs_id})" in (cli.data_dir / "A.log").read_text()
    _check_files(cli, url, "A", fuse_mountpoint, data, "-o", "ro")
    _check_files(cli, url, "A", fuse_mountpoint, data)
    assert _fs_id(url, "A") == fs_id  # given once


def test_a_filesystem_of_format_1_is_migrated_at_its_first_read_write_mount(cli, tmp_path, fuse_mountpoint):
    """Orphan and dirty-chunk keys as format 1 wrote them (inode as a tuple integer): a read-only mount
    is refused with one line; the first read-write mount re-keys them and records format 2."""
    url, blocks = _url(tmp_path), tmp_path / "blocks"
    _mkfs(cli, url, blocks, "A")
    data = _write_files(cli, url, "A", fuse_mountpoint)
    store = open_store(url)
    try:
        settings = load_config(store, "A").__dict__
        del settings["format_version"]  # as format 1 wrote the settings
        large = store.transact(lambda tr: tr.get(FsKeys("A").entry(1, b"large")))
        ino = unpack(large)[0]
        old_mark = fdb.tuple.pack(("fusefs", "A", "w", ino, 0))  # a writer of format 1 died mid-chunk

        def downgrade(tr):
            tr.set(FsKeys("A").config(), pack(settings))
            tr.set(old_mark, b"")

        store.transact(downgrade)
    finally:
        store.close()
    read_only = cli("mount", "--store", url, "--name", "A", "-o", "ro", str(fuse_mountpoint))
    assert read_only.returncode == 1
    assert read_only.one_line_error() == (
        "filesystem 'A' was made by an older fusefs (format 1): mount it read-write once (without -o ro), "
        "which brings it to the current format"
    )
    _check_files(cli, url, "A", fuse_mountpoint, data)
    assert _config(url, "A").format_version == FORMAT_VERSION
    store = open_store(url)
    try:
        keys = FsKeys("A")
        assert store.transact(lambda tr: tr.get(old_mark)) is None
        # the mount's recovery found the re-keyed mark of a dead session and checked the chunk: gone
        assert store.transact(lambda tr: tr.get_range(*keys.dirty_chunks())) == []
    finally:
        store.close()
    _check_files(cli, url, "A", fuse_mountpoint, data, "-o", "ro")
