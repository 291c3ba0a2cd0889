"""Mount life cycle through the command line on a real FUSE mount: background daemon and foreground,
clean unmount on ``fusefs umount``, SIGTERM and SIGINT.  Every mount is undone at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from fusefs_cli_helpers import mounted_type

FSTYPE = "fuse.fusefs"


def _mkfs(cli, tmp_path, name="fs"):
    url = f"sqlite://{tmp_path}/meta.db"
    blocks = tmp_path / f"blocks-{name}"
    blocks.mkdir()
    result = cli("mkfs", "--store", url, "--blocks", str(blocks), name)
    assert result.returncode == 0, result.stderr
    return url


def _wait_mounted(path, process, timeout=30.0):
    deadline = time.monotonic() + timeout
    while mounted_type(path) != FSTYPE:
        if process.poll() is not None:
            pytest.fail(f"daemon exited with {process.returncode}: {process.stderr.read()}")
        assert time.monotonic() < deadline, f"{path} not mounted after {timeout} s"
        time.sleep(0.05)


def test_background_mount_round_trip(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    result = cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint))
    assert result.returncode == 0, result.stderr
    # Usable as soon as the command returns: no waiting.
    assert mounted_type(fuse_mountpoint) == FSTYPE
    assert result.stdout.startswith(f"mounted 'fs' at {fuse_mountpoint} (pid ")
    assert f"log {cli.data_dir}/fs.log" in result.stdout
    (fuse_mountpoint / "hello.txt").write_text("hello\n")
    assert (fuse_mountpoint / "hello.txt").read_text() == "hello\n"

    status = cli("status", "--store", url)
    assert status.returncode == 0, status.stderr
    assert f"{fuse_mountpoint}: 'fs' in {url}" in status.stdout
    assert f"fs: blocks {tmp_path}/blocks-fs" in status.stdout
    assert f"mounted at {fuse_mountpoint}" in status.stdout

    # A second mount of the same store is refused while the first runs.
    other = tmp_path / "other"
    other.mkdir()
    second = cli("mount", "--store", url, "--name", "fs", str(other))
    assert second.returncode == 1
    assert "is in use by another process" in second.one_line_error()
    assert mounted_type(other) is None

    log = cli("log", "--store", url, "--name", "fs")
    assert log.returncode == 0, log.stderr
    assert "create" in log.stdout and "hello.txt" in log.stdout

    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert mounted_type(fuse_mountpoint) is None
    # umount waited for the daemon, so the store is free at once, and the file persisted.
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    assert (fuse_mountpoint / "hello.txt").read_text() == "hello\n"
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert "Traceback" not in (cli.data_dir / "fs.log").read_text()


def test_mount_without_a_store_creates_the_default_filesystem(cli, fuse_mountpoint):
    result = cli("mount", str(fuse_mountpoint))
    assert result.returncode == 0, result.stderr
    assert f"created filesystem 'default' in {cli.default_url}" in result.stdout
    assert mounted_type(fuse_mountpoint) == FSTYPE
    assert (cli.data_dir / "blocks" / "default").is_dir()
    (fuse_mountpoint / "f").write_bytes(b"x")
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    # The second time, the filesystem exists and is reused.
    again = cli("mount", str(fuse_mountpoint))
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stdout
    assert (fuse_mountpoint / "f").read_bytes() == b"x"
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


def test_read_only_mount(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    assert cli("mount", "--store", url, "--name", "fs", "-o", "ro", str(fuse_mountpoint)).returncode == 0
    with pytest.raises(OSError) as caught:
        (fuse_mountpoint / "x").write_text("x")
    assert caught.value.errno == 30  # EROFS
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


def test_mount_on_an_existing_fusefs_mount(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    result = cli("mount", "--store", f"sqlite://{tmp_path}/other.db", str(fuse_mountpoint))
    assert result.returncode == 1
    assert result.one_line_error() == (
        f"mountpoint {fuse_mountpoint} is already a mount point (fuse.fusefs fusefs:fs): "
        "unmount it first or choose another directory"
    )
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_foreground_mount_unmounts_cleanly_on_signal(cli, tmp_path, fuse_mountpoint, signum):
    url = _mkfs(cli, tmp_path)
    daemon = cli.popen("mount", "--store", url, "--name", "fs", "--foreground", str(fuse_mountpoint))
    try:
        _wait_mounted(fuse_mountpoint, daemon)
        (fuse_mountpoint / "kept").write_text("data")
        daemon.send_signal(signum)
        _, stderr = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert mounted_type(fuse_mountpoint) is None
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    # Everything written before the signal is in the store.
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    assert (fuse_mountpoint / "kept").read_text() == "data"
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


def test_foreground_mount_ends_with_status_0_on_umount(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    daemon = cli.popen("mount", "--store", url, "--name", "fs", "-f", str(fuse_mountpoint))
    try:
        _wait_mounted(fuse_mountpoint, daemon)
        assert cli("umount", str(fuse_mountpoint)).returncode == 0
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_umount_of_a_busy_mount_is_one_line(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    holder = subprocess.Popen(["sleep", "60"], cwd=fuse_mountpoint)
    try:
        result = cli("umount", str(fuse_mountpoint))
        if os.geteuid() == 0:
            # root's fusermount3 -u uses umount2 without MNT_DETACH: a busy mount stays.
            assert result.returncode == 1
            assert "busy" in result.one_line_error()
            assert mounted_type(fuse_mountpoint) == FSTYPE
        assert cli("umount", "--lazy", str(fuse_mountpoint)).returncode == 0 or result.returncode == 0
    finally:
        holder.kill()
        holder.wait()
    assert mounted_type(fuse_mountpoint) is None


def test_gc_and_blocks_add_on_an_unmounted_filesystem(cli, tmp_path):
    url = _mkfs(cli, tmp_path)
    extra = tmp_path / "extra"
    extra.mkdir()
    result = cli("blocks", "add", "--store", url, "--name", "fs", str(extra))
    assert result.returncode == 0, result.stderr
    assert f"added block directory {extra} to 'fs' (2 directories)" in result.stdout
    assert f"blocks {tmp_path}/blocks-fs, {extra};" in cli("status", "--store", url).stdout
    again = cli("blocks", "add", "--store", url, "--name", "fs", str(extra))
    assert again.returncode == 1
    assert "already block directory 1" in again.one_line_error()
    gc = cli("gc", "--store", url, "--name", "fs")
    assert gc.returncode == 0, gc.stderr
    assert len(gc.stdout.splitlines()) == 1


def _daemon_pid(mount_output: str) -> int:
    return int(mount_output.split("(pid ", 1)[1].split(",", 1)[0])


def _wait_gone(pid, timeout=30.0):
    from fusefs.daemon_records import wait_for_exit

    assert wait_for_exit(pid, timeout), f"daemon {pid} still running"


def test_background_daemon_unmounts_cleanly_on_sigterm(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    result = cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint))
    assert result.returncode == 0, result.stderr
    (fuse_mountpoint / "before-term").write_text("x")
    pid = _daemon_pid(result.stdout)
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)
    assert mounted_type(fuse_mountpoint) is None
    log = (cli.data_dir / "fs.log").read_text()
    assert "SIGTERM received" in log and "unmounted" in log and "Traceback" not in log
    assert str(fuse_mountpoint) not in cli("status", "--store", url).stdout


def test_committed_changes_survive_kill_9_and_a_dead_mount_can_be_unmounted(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    result = cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint))
    assert result.returncode == 0, result.stderr
    (fuse_mountpoint / "dir").mkdir()
    (fuse_mountpoint / "dir" / "closed.txt").write_text("committed at close")
    pid = _daemon_pid(result.stdout)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    # The dead mount is still in the mount table: mounting on it is refused, unmounting works.
    assert mounted_type(fuse_mountpoint) == FSTYPE
    refused = cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint))
    assert refused.returncode == 1
    assert "is already a mount point" in refused.one_line_error()
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert mounted_type(fuse_mountpoint) is None
    # The killed daemon's store lock died with it.
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    assert (fuse_mountpoint / "dir" / "closed.txt").read_text() == "committed at close"
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


def test_log_follow_prints_changes_of_a_running_mount(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    assert cli("mount", "--store", url, "--name", "fs", str(fuse_mountpoint)).returncode == 0
    follower = cli.popen("log", "--store", url, "--name", "fs", "--follow")
    try:
        (fuse_mountpoint / "first").write_text("1")
        (fuse_mountpoint / "first").rename(fuse_mountpoint / "second")
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 20
        while not any("second" in line for line in lines):
            assert time.monotonic() < deadline, f"--follow printed only:\n{lines}"
            time.sleep(0.1)
        assert any(" create " in line and "/first" in line for line in lines)
        assert any(" rename " in line and "/first -> " in line and "/second" in line for line in lines)
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    limited = cli("log", "--store", url, "--name", "fs", "--limit", "1")
    assert len(limited.stdout.splitlines()) == 1
    assert cli("umount", str(fuse_mountpoint)).returncode == 0


def test_read_only_mount_beside_the_owner_of_the_default_store(cli, tmp_path, fuse_mountpoint):
    owner = cli("mount", str(fuse_mountpoint))  # creates the default store and filesystem
    assert owner.returncode == 0, owner.stderr
    reader_mountpoint = tmp_path / "reader"
    reader_mountpoint.mkdir()
    try:
        reader = cli("mount", "-o", "ro", str(reader_mountpoint))
        assert reader.returncode == 0, reader.stderr
        assert mounted_type(reader_mountpoint) == FSTYPE
        (fuse_mountpoint / "from-owner").write_text("seen")
        deadline = time.monotonic() + 10
        while not (reader_mountpoint / "from-owner").exists():
            assert time.monotonic() < deadline, "the read-only mount never saw the owner's file"
            time.sleep(0.1)
        assert (reader_mountpoint / "from-owner").read_text() == "seen"
        assert cli("umount", str(reader_mountpoint)).returncode == 0
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(reader_mountpoint)], capture_output=True)
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
