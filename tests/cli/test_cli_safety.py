"""What the command prints when names, stores or mounts are not what they should be: names with control
characters or invalid UTF-8 cannot forge lines of ``log``, ``status`` or the daemon's log; an empty
``--store``, a dead mount and a damaged store each get one clear line."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest
from fusefs_cli_helpers import mounted_type

FSTYPE = "fuse.fusefs"
#: A record of ``fusefs log``: versionstamp, time, operation, inode, uid, then names.
LOG_RECORD = re.compile(r"[0-9a-f]{20} \d+ [a-z_]+ ino=\d+ uid=\d+( |$)")
#: A line of the daemon's log: date, time, pid, level.
DAEMON_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\d+) [A-Z]+ ")
FORGED = "2026-01-01 00:00:00,000 1 INFO forged: record"


def _mkfs(cli, tmp_path: Path, blocks_name: str = "blocks") -> str:
    url = f"sqlite://{tmp_path}/meta.db"
    blocks = tmp_path / blocks_name
    blocks.mkdir()
    result = cli("mkfs", "--store", url, "--blocks", str(blocks), "fs")
    assert result.returncode == 0, result.stderr
    return url


def _daemon_pid(mount_output: str) -> int:
    return int(re.search(r"\(pid (\d+),", mount_output).group(1))


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    from fusefs.daemon_records import wait_for_exit

    assert wait_for_exit(pid, timeout), f"daemon {pid} still running after {timeout} s"


def test_names_cannot_forge_lines_of_log_status_or_the_daemon_log(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path, blocks_name="blocks\nfake line")
    # A mountpoint whose name holds a whole daemon log line after a newline.
    mountpoint = fuse_mountpoint / f"m\n{FORGED}"
    mountpoint.mkdir()
    mounted = cli("mount", "--store", url, "--name", "fs", str(mountpoint))
    assert mounted.returncode == 0, mounted.stderr
    try:
        assert len(mounted.stdout.splitlines()) == 1, mounted.stdout
        assert "\\n2026-01-01" in mounted.stdout
        root = os.fsencode(mountpoint)
        names = [b"evil\n00000000000000000000 1 create ino=1 uid=0 forged", b"esc\x1b[2J", b"bad\xff\xfe"]
        for name in names:
            os.close(os.open(root + b"/" + name, os.O_CREAT | os.O_WRONLY, 0o644))
        os.rename(root + b"/" + names[2], root + b"/renamed\r\n")

        log = cli("log", "--store", url, "--name", "fs")
        assert log.returncode == 0, log.stderr
        lines = log.stdout.splitlines()
        assert len(lines) == 4, log.stdout  # three creates, one rename
        assert all(LOG_RECORD.match(line) for line in lines), log.stdout
        assert "/evil\\n00000000000000000000 1 create ino=1 uid=0 forged" in log.stdout
        assert "/esc\\x1b[2J" in log.stdout
        assert "/bad\\xff\\xfe -> " in log.stdout and "/renamed\\r\\n" in log.stdout

        status = cli("status", "--store", url)
        assert status.returncode == 0, status.stderr
        ours = [line for line in status.stdout.splitlines() if "m\\n2026-01-01" in line]
        assert len(ours) == 3, status.stdout  # the mount, the filesystem mounted there, its session
        assert "blocks\\nfake line" in status.stdout
        assert not any(line.startswith(("2026-01-01", "fake line")) for line in status.stdout.splitlines())
    finally:
        assert cli("umount", str(mountpoint)).returncode == 0
    daemon_log = (cli.data_dir / "fs.log").read_text()
    assert "m\\n2026-01-01" in daemon_log
    assert not any(line.startswith("2026-01-01") for line in daemon_log.splitlines()), daemon_log


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["log"],
        ["mkfs"],
        ["gc"],
        ["mount", "/nonexistent-mountpoint"],
        ["blocks", "add", "/nonexistent-dir"],
    ],
    ids=lambda args: args[0] if args[0] != "blocks" else "blocks-add",
)
def test_an_empty_store_url_is_a_usage_error(cli, args):
    where = 2 if args[0] == "blocks" else 1
    result = cli(*args[:where], "--store", "", *args[where:])
    assert result.returncode == 2
    assert "empty store URL" in result.one_line_error()
    assert not cli.data_dir.exists() or not (cli.data_dir / "meta.db").exists()  # the default is untouched


def test_status_of_a_mount_whose_daemon_died(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    mounted = cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint))
    assert mounted.returncode == 0, mounted.stderr
    pid = _daemon_pid(mounted.stdout)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert mounted_type(fuse_mountpoint) == FSTYPE  # the kernel keeps the dead mount

    status = cli("status", "--store", url)
    assert status.returncode == 0, status.stderr
    line = f"{fuse_mountpoint}: 'fs' (daemon not running: run `fusefs umount {fuse_mountpoint}`)"
    assert line in status.stdout.splitlines(), status.stdout
    # Following the advice works.
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert mounted_type(fuse_mountpoint) is None
    after = cli("status", "--store", url).stdout.splitlines()
    assert line not in after
    # What the dead mount left stays listed until a mount recovers it.
    assert [entry for entry in after if str(fuse_mountpoint) in entry][0].endswith(
        "(dead, will be recovered by the next mount)"
    ), after


def _damage_settings(path: Path) -> None:
    """Replace the filesystem's settings (the only value whose key ends in 'conf') with bytes that are
    not msgpack, as a bad disk or a bad tool could."""
    with sqlite3.connect(path) as db:
        changed = db.execute("UPDATE kv SET v = x'c1c1c1' WHERE hex(k) LIKE '%02636F6E6600'").rowcount
    assert changed == 1


def _damage_kv_page(path: Path) -> None:
    """Overwrite the root page of the store's table: SQLite opens the file, then fails to read it."""
    with sqlite3.connect(path) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'kv'").fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    with open(path, "r+b") as store:
        store.seek((root - 1) * page_size)
        store.write(b"\x0d" + b"\xff" * (page_size - 1))


@pytest.mark.parametrize("damage", [_damage_settings, _damage_kv_page], ids=["value", "page"])
def test_status_and_log_of_a_damaged_store_name_it(cli, tmp_path, damage):
    url = _mkfs(cli, tmp_path)
    damage(tmp_path / "meta.db")
    for args in (["status"], ["log", "--name", "fs"]):
        result = cli(*args, "--store", url)
        assert result.returncode == 1
        error = result.one_line_error()
        assert error.startswith(f"store {url} is damaged: "), error
        assert "internal error" not in error


def test_status_of_a_file_that_is_not_a_store_names_it(cli, tmp_path):
    path = tmp_path / "meta.db"
    path.write_bytes(b"not a database, " * 100)
    result = cli("status", "--store", f"sqlite://{path}")
    assert result.returncode == 1
    error = result.one_line_error()
    assert str(path) in error and "internal error" not in error
