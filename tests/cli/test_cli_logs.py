"""The daemon's log as a service needs it: a level, reopening on SIGHUP (logrotate), stderr with
``--log-file -`` and journald's format when ``JOURNAL_STREAM`` names stderr."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from fusefs_cli_helpers import mounted_type

TIMESTAMPED = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ INFO fusefs\.daemon: serving$", re.MULTILINE
)


def _mkfs(cli, tmp_path):
    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    assert cli("mkfs", "--store", url, "--blocks", str(tmp_path / "blocks"), "fs").returncode == 0
    return url


def _wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


def test_sighup_reopens_the_log_file(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    log = tmp_path / "fs.log"
    result = cli("mount", "--store", url, "--name", "fs", "--log-file", str(log), str(fuse_mountpoint))
    assert result.returncode == 0, result.stderr
    pid = int(re.search(r"\(pid (\d+),", result.stdout).group(1))
    assert TIMESTAMPED.search(log.read_text())
    rotated = tmp_path / "fs.log.1"
    os.rename(log, rotated)  # what logrotate does before it signals
    os.kill(pid, signal.SIGHUP)
    _wait_for(lambda: log.exists() and "reopened" in log.read_text(), "reopened log")
    assert log.stat().st_mode & 0o777 == 0o600
    (fuse_mountpoint / "f").write_text("still serving")
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert "unmounted" in log.read_text()
    assert "unmounted" not in rotated.read_text()
    assert "Traceback" not in log.read_text() + rotated.read_text()


def test_log_level_leaves_out_less_severe_records(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    log = tmp_path / "fs.log"
    result = cli(
        "mount",
        "--store",
        url,
        "--name",
        "fs",
        "--log-level",
        "warning",
        "--log-file",
        str(log),
        str(fuse_mountpoint),
    )
    assert result.returncode == 0, result.stderr
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert " INFO " not in log.read_text()
    bad = cli("mount", "--log-level", "chatty", str(fuse_mountpoint))
    assert bad.returncode == 2
    assert "--log-level: invalid choice: 'chatty'" in bad.one_line_error()


def _foreground_to(cli, url, mountpoint, stderr_file, env):
    daemon = subprocess.Popen(
        cli.command(
            "mount", "--store", url, "--name", "fs", "--foreground", "--log-file", "-", str(mountpoint)
        ),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr_file,
    )
    try:
        _wait_for(lambda: mounted_type(mountpoint) == "fuse.fusefs" or daemon.poll() is not None, "mount")
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0


def test_log_file_dash_is_stderr_in_journald_format_under_systemd(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    journal = tmp_path / "journal"
    with open(journal, "w") as stream:
        status = os.fstat(stream.fileno())
        env = dict(cli.env, JOURNAL_STREAM=f"{status.st_dev}:{status.st_ino}")
        _foreground_to(cli, url, fuse_mountpoint, stream, env)
    text = journal.read_text()
    # No timestamp or pid (journald records both); a syslog priority journald takes as the level.
    assert "<6>INFO fusefs.daemon: serving\n" in text
    assert not TIMESTAMPED.search(text)

    # Stderr that is not the journal keeps the timestamps.
    plain = tmp_path / "plain"
    with open(plain, "w") as stream:
        _foreground_to(cli, url, fuse_mountpoint, stream, dict(cli.env, JOURNAL_STREAM="1:2"))
    assert TIMESTAMPED.search(plain.read_text())


def test_background_daemon_with_log_file_dash_keeps_stderr(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    err = tmp_path / "stderr"
    with open(err, "w") as stream:
        done = subprocess.run(
            cli.command("mount", "--store", url, "--name", "fs", "--log-file", "-", str(fuse_mountpoint)),
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stream,
            text=True,
            timeout=90,
        )
    assert done.returncode == 0, err.read_text()
    cli.daemons += [int(pid) for pid in re.findall(r"\(pid (\d+),", done.stdout)]
    assert "log stderr)" in done.stdout
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert TIMESTAMPED.search(err.read_text())


def test_a_log_file_that_cannot_be_reopened_keeps_the_old_one(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    (tmp_path / "logs").mkdir()
    result = cli(
        "mount",
        "--store",
        url,
        "--name",
        "fs",
        "--log-file",
        str(tmp_path / "logs" / "fs.log"),
        str(fuse_mountpoint),
    )
    assert result.returncode == 0, result.stderr
    pid = int(re.search(r"\(pid (\d+),", result.stdout).group(1))
    os.rename(tmp_path / "logs", tmp_path / "old")  # the log's directory is gone: nowhere to reopen
    old = tmp_path / "old" / "fs.log"
    os.kill(pid, signal.SIGHUP)
    _wait_for(lambda: "cannot reopen the log file" in old.read_text(), "reopen failure")
    assert "(still logging to the old one)" in old.read_text()
    (fuse_mountpoint / "f").write_text("still serving")
    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    assert "unmounted" in old.read_text()
