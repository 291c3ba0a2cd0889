"""Every expected failure is one line ``fusefs: error: ...`` on stderr and a non-zero exit status
(2 for usage errors, 1 otherwise), never a traceback — unless ``--debug`` asks for it."""

from __future__ import annotations

import os

import pytest

from metadata.sqlite_store import SqliteStore


def test_mount_on_a_missing_mountpoint(cli, tmp_path):
    result = cli("mount", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.one_line_error() == f"mountpoint {tmp_path}/nowhere does not exist"


def test_mount_on_a_file(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli("mount", str(tmp_path / "file"))
    assert result.returncode == 1
    assert result.one_line_error() == f"mountpoint {tmp_path}/file is not a directory"


def test_mount_on_a_mount_point(cli):
    result = cli("mount", "/proc")
    assert result.returncode == 1
    assert result.one_line_error().startswith("mountpoint /proc is already a mount point (proc ")


def test_nothing_is_created_when_the_mountpoint_is_wrong(cli, tmp_path):
    cli("mount", str(tmp_path / "nowhere"))
    assert not (cli.data_dir / "meta.db").exists()


@pytest.mark.parametrize(
    "command", [["mkfs"], ["mount", "MNT"], ["log"], ["gc"], ["status"], ["blocks", "add", "DIR"]]
)
@pytest.mark.parametrize(
    "url, message",
    [
        ("postgres://db/x", "unsupported store URL 'postgres://db/x': use sqlite:///ABSOLUTE/PATH or fdb://"),
        ("sqlite://meta.db", "store URL 'sqlite://meta.db' has a relative path"),
        ("sqlite:///no/such/dir/meta.db", "directory /no/such/dir does not exist"),
    ],
)
def test_bad_store_url_is_a_usage_error(cli, tmp_path, command, url, message):
    args = [str(tmp_path) if arg in ("MNT", "DIR") else arg for arg in command]
    result = cli(*args, "--store", url)
    assert result.returncode == 2
    assert message in result.one_line_error()


def test_unknown_filesystem(cli, tmp_path, mountpoint):
    url = f"sqlite://{tmp_path}/meta.db"
    assert cli("mkfs", "--store", url, "--blocks", str(tmp_path), "real").returncode == 0
    expected = f"no filesystem named 'ghost' in {url}"
    for command in (["log"], ["gc"], ["blocks", "add", str(tmp_path)], ["mount", str(mountpoint)]):
        result = cli(*command, "--store", url, "--name", "ghost")
        assert result.returncode == 1, command
        assert result.one_line_error() == expected, command


def test_store_in_use_by_another_process(cli, tmp_path, mountpoint):
    url = f"sqlite://{tmp_path}/meta.db"
    assert cli("mkfs", "--store", url, "--blocks", str(tmp_path)).returncode == 0
    owner = SqliteStore(f"{tmp_path}/meta.db")  # as a mounted daemon holds it
    try:
        expected = f"store {tmp_path}/meta.db is in use by another process (pid {os.getpid()})"
        for command in (["mkfs", "other"], ["mount", str(mountpoint)], ["gc"]):
            result = cli(*command, "--store", url)
            assert result.returncode == 1, command
            assert result.one_line_error() == expected, command
        # Reading the change log is allowed beside the owner.
        assert cli("log", "--store", url).returncode == 0
    finally:
        owner.close()


def test_unusable_block_directory_at_mkfs(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    for directory, reason in [
        (tmp_path / "missing", "it does not exist"),
        (tmp_path / "file", "it is not a directory"),
    ]:
        result = cli("mkfs", "--store", f"sqlite://{tmp_path}/meta.db", "--blocks", str(directory))
        assert result.returncode == 1
        assert result.one_line_error() == f"block directory '{directory}' is unusable: {reason}"
    # A failed mkfs leaves no filesystem behind.
    assert "0 filesystem(s)" in cli("status", "--store", f"sqlite://{tmp_path}/meta.db").stdout


def test_block_directory_holding_chunk_files_but_no_marker(cli, tmp_path):
    """Chunk files of a filesystem whose marker is gone would be taken for ours, and deleted by our gc."""
    from blocks.layout import chunk_path

    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "first").mkdir()
    assert cli("mkfs", "--store", url, "--blocks", str(tmp_path / "first"), "one").returncode == 0
    blocks = tmp_path / "blocks"
    chunk = chunk_path(str(blocks), 1)
    os.makedirs(os.path.dirname(chunk))
    open(chunk, "wb").close()
    refused = (["mkfs", "--blocks", str(blocks), "two"], ["blocks", "add", "--name", "one", str(blocks)])
    for command in refused:
        result = cli(*command, "--store", url)
        assert result.returncode == 1, command
        assert result.one_line_error() == (
            f"block directory {blocks} holds chunk files but no fusefs marker (another filesystem's?): "
            "use an empty directory"
        )
        assert not (blocks / ".fusefs-blocks").exists()
    assert os.path.exists(chunk)
    assert "1 filesystem(s)" in cli("status", "--store", url).stdout


def test_mkfs_twice(cli, tmp_path):
    url = f"sqlite://{tmp_path}/meta.db"
    assert cli("mkfs", "--store", url, "--blocks", str(tmp_path), "fs").returncode == 0
    result = cli("mkfs", "--store", url, "--blocks", str(tmp_path), "fs")
    assert result.returncode == 1
    assert result.one_line_error() == f"a filesystem named 'fs' already exists in {url}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["mount", "-o", "ro,bogus", "."], "unsupported mount option 'bogus'"),
        (["mount", "-o", "ro,rw", "."], "contradict"),
        (["mount", "-o", "strict,writeback_cache", "."], "'strict' and 'writeback_cache' cannot be combined"),
        (["mount", "-o", "ro,writeback_cache", "."], "'ro' and 'writeback_cache' cannot be combined"),
        (["mkfs", "--chunk-size", "1000"], "--chunk-size must be a positive multiple of 4 KiB"),
        (["mkfs", "--inline-max", "lots"], "invalid size 'lots'"),
        (["mkfs", "--inline-max", "8M"], "--inline-max must be between 0 and the chunk size"),
        (["mkfs", "../escape"], "invalid filesystem name '../escape'"),
        (["mkfs", "--log-retention", "0"], "must be at least 1 hour, not 0"),
        (["mkfs", "--log-retention", "1.5"], "not a whole number of hours: '1.5'"),
        (["log", "--limit", "-1"], "--limit must be 0"),
        (["mount"], "the following arguments are required: MOUNTPOINT"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.one_line_error()


def test_umount_of_something_not_mounted(cli, tmp_path):
    result = cli("umount", str(tmp_path))
    assert result.returncode == 1
    assert result.one_line_error() == f"{tmp_path} is not mounted"


def test_umount_of_another_filesystem_type(cli):
    result = cli("umount", "/proc")
    assert result.returncode == 1
    assert result.one_line_error() == "/proc is not a fusefs mount (it is proc proc)"


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli("log", "--debug", "--store", f"sqlite://{tmp_path}/meta.db", "--name", "ghost")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("fusefs: error: ")


def test_status_before_anything_exists(cli):
    result = cli("status")
    assert result.returncode == 0, result.stderr
    assert "does not exist yet" in result.stdout
    assert not (cli.data_dir / "meta.db").exists()


def test_mkfs_records_the_log_retention(cli, tmp_path):
    url = f"sqlite://{tmp_path}/meta.db"
    result = cli("mkfs", "--store", url, "--blocks", str(tmp_path), "--log-retention", "48", "fs")
    assert result.returncode == 0 and "change log kept 48 h" in result.stdout
    from metadata.namespace import load_config

    store = SqliteStore(f"{tmp_path}/meta.db", read_only=True, exclusive=False)
    try:
        assert load_config(store, "fs").log_retention_s == 48 * 3600
    finally:
        store.close()
