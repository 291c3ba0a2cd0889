"""``fusefs stats`` through the daemon's control channel, and ``-o metrics`` scraped over HTTP, on real
mounts driven by real file operations."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from fusefs_cli_helpers import mounted_type

MIB = 1 << 20


def _mkfs(cli, tmp_path):
    url = f"sqlite://{tmp_path}/meta.db"
    (tmp_path / "blocks").mkdir()
    result = cli("mkfs", "--store", url, "--blocks", str(tmp_path / "blocks"), "fs")
    assert result.returncode == 0, result.stderr
    return url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _mount(cli, url, mountpoint, *extra):
    result = cli("mount", "--store", url, "--name", "fs", *extra, str(mountpoint))
    assert result.returncode == 0, result.stderr
    return int(re.search(r"\(pid (\d+),", result.stdout).group(1))


def _stats(cli, mountpoint):
    result = cli("stats", "--once", "--json", "--interval", "0.2", str(mountpoint))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("shared", [False, True], ids=["sole", "shared"])
def test_stats_and_metrics_count_what_the_mount_did(cli, tmp_path, fuse_mountpoint, shared):
    """In shared mode, transactions run in worker threads: counted all the same."""
    url = _mkfs(cli, tmp_path)
    port = _free_port()
    _mount(cli, url, fuse_mountpoint, "-o", f"metrics=127.0.0.1:{port}" + (",shared" if shared else ""))
    data = os.urandom(3 * MIB)
    with open(fuse_mountpoint / "big", "wb") as big:  # three write(2)s to one chunk file
        for offset in range(0, len(data), MIB):
            big.write(data[offset : offset + MIB])
    assert (fuse_mountpoint / "big").read_bytes() == data
    with pytest.raises(OSError):  # ENODATA: a request answered with an error
        os.getxattr(fuse_mountpoint / "big", "user.missing")
    for n in range(20):  # a name looked up in a directory made here: answered by the daemon's cache
        os.mkdir(fuse_mountpoint / f"d{n}")
        assert not (fuse_mountpoint / f"d{n}" / "absent").exists()
    with open(fuse_mountpoint / "big", "rb"):
        held = _stats(cli, fuse_mountpoint)
    assert held["open_files"] == 1

    view = _stats(cli, fuse_mountpoint)
    assert view["open_files"] == 0
    assert view["bytes_written"] >= len(data)
    assert view["bytes_read"] >= len(data)
    assert view["operations"]["write"]["count"] >= 1
    assert view["operations"]["getxattr"]["errors"] >= 1
    assert view["transactions"] > 0
    assert {"conflicts", "retries", "outage_retries", "transactions_per_second"} <= view.keys()
    # The chunk file stayed open across the writes; the kernel asked for security.capability before each
    # write(2), and the file created here was known to have none.
    caches = view["caches"]
    assert caches.keys() == {"chunk_fds", "capability", "namespace"}  # no object data tier
    assert caches["chunk_fds"]["hits"] >= 2 and caches["chunk_fds"]["misses"] >= 1
    assert caches["capability"]["hits"] >= 3
    assert caches["namespace"]["hits"] >= 1
    # statfs is asked for by `stats` itself while it finds the mount: a request within the interval.
    statfs = view["operations"]["statfs"]
    assert set(statfs["latency_ms"]) == {"p50", "p90", "p99"}

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    samples = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["fusefs_bytes_written_total"] >= len(data)
    assert samples["fusefs_bytes_read_total"] >= len(data)
    assert samples["fusefs_open_files"] == 0
    writes = samples['fusefs_requests_total{operation="write"}']
    assert writes >= 1
    assert samples['fusefs_request_duration_seconds_count{operation="write"}'] == writes
    assert samples['fusefs_request_duration_seconds_bucket{le="+Inf",operation="write"}'] == writes
    assert samples["fusefs_transactions_total"] > 0
    assert samples["fusefs_conflicts_total"] >= 0
    assert samples['fusefs_cache_hits_total{cache="chunk_fds"}'] >= 2
    assert samples['fusefs_cache_misses_total{cache="chunk_fds"}'] >= 1
    assert samples['fusefs_cache_hits_total{cache="capability"}'] >= 3

    assert cli("umount", str(fuse_mountpoint)).returncode == 0
    # The control socket goes with its daemon.
    assert not list((cli.data_dir / "mounts").glob("*.sock"))


def test_live_view_refreshes(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    _mount(cli, url, fuse_mountpoint)
    viewer = cli.popen("stats", "--interval", "0.2", str(fuse_mountpoint))
    try:
        frames = 0
        for line in viewer.stdout:
            (fuse_mountpoint / "f").write_bytes(b"x")
            frames += line.startswith("fusefs stats ")
            if frames == 3:
                break
        assert frames == 3, viewer.stderr.read()
        assert viewer.poll() is None  # it keeps refreshing until stopped
    finally:
        viewer.send_signal(signal.SIGINT)
        viewer.wait(timeout=30)
    assert viewer.returncode == 130


def test_stats_errors_are_one_line(cli, tmp_path):
    result = cli("stats", str(tmp_path))
    assert result.returncode == 1
    assert result.one_line_error() == f"{tmp_path} is not mounted"
    result = cli("stats", "/proc")
    assert result.returncode == 1
    assert result.one_line_error().startswith("/proc is not a fusefs mount (it is proc ")
    result = cli("stats", "--interval", "0", str(tmp_path))
    assert result.returncode == 2
    assert "--interval must be a positive number of seconds" in result.one_line_error()
    assert cli("stats").returncode == 2


def test_a_mount_of_another_user_has_no_stats_for_us(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    pid = _mount(cli, url, fuse_mountpoint)
    # This user's daemon records are elsewhere: the mount is not one of ours.
    cli.env["XDG_DATA_HOME"] = str(tmp_path / "elsewhere")
    result = cli("stats", str(fuse_mountpoint))
    assert result.returncode == 1
    assert "no daemon of this user serves" in result.one_line_error()
    cli.env["XDG_DATA_HOME"] = str(cli.home / "xdg")
    # A daemon that died without removing its socket: a clear line, not a traceback.
    os.kill(pid, signal.SIGSTOP)
    try:
        os.unlink(cli.data_dir / "mounts" / f"{pid}.sock")
        result = cli("stats", "--once", str(fuse_mountpoint))
        assert result.returncode == 1
        assert "cannot reach the daemon's control channel" in result.one_line_error()
    finally:
        os.kill(pid, signal.SIGCONT)


def test_control_channel_refuses_other_users(cli, tmp_path, fuse_mountpoint, unpriv_user):
    url = _mkfs(cli, tmp_path)
    pid = _mount(cli, url, fuse_mountpoint)
    socket_path = cli.data_dir / "mounts" / f"{pid}.sock"
    assert socket_path.stat().st_mode & 0o777 == 0o600
    # A second name for the socket where the other user can reach it (its own directory is 0700).
    reachable = Path(tempfile.mkdtemp(prefix="fusefs-control-", dir="/tmp"))  # on tmp_path's filesystem
    os.chmod(reachable, 0o755)
    try:
        os.link(socket_path, reachable / "sock")
        client = (
            "import socket\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            f"    s.connect({str(reachable / 'sock')!r})\n"
            "except PermissionError:\n"
            "    print('EACCES'); raise SystemExit\n"
            "s.sendall(b'stats\\n')\n"
            "print(s.makefile().readline().strip())\n"
        )
        assert unpriv_user.py(client) == "EACCES"  # the socket is 0600
        os.chmod(socket_path, 0o666)  # as if reachable: the peer's uid is checked too
        reply = json.loads(unpriv_user.py(client))
        assert reply == {"error": "refused: only the mount's owner may use its control channel"}
    finally:
        for leftover in reachable.iterdir():
            leftover.unlink()
        reachable.rmdir()
    assert "operations" in _stats(cli, fuse_mountpoint)  # the owner still may


def test_metrics_address_errors(cli, tmp_path, mountpoint):
    url = _mkfs(cli, tmp_path)
    for bad in ("metrics=localhost", "metrics=127.0.0.1:0", "metrics=nohost:80", "metrics"):
        result = cli("mount", "--store", url, "--name", "fs", "-o", bad, str(mountpoint))
        assert result.returncode == 2, bad
        assert "metrics" in result.one_line_error()
        assert mounted_type(mountpoint) is None


def test_metrics_port_in_use_fails_the_mount(cli, tmp_path, fuse_mountpoint):
    url = _mkfs(cli, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "mount", "--store", url, "--name", "fs", "-o", f"metrics=127.0.0.1:{port}", str(fuse_mountpoint)
        )
    assert result.returncode == 1
    assert f"cannot serve metrics at 127.0.0.1:{port}: Address already in use" in result.one_line_error()
    deadline = time.monotonic() + 30
    while mounted_type(fuse_mountpoint) is not None:  # nothing was mounted, or it is going
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_conflicts_are_counted_apart_from_other_retries(cli, tmp_path, fuse_mountpoint):
    """Retry chaos fails a share of the commits with a conflict: each one re-runs its transaction."""
    url = _mkfs(cli, tmp_path)
    cli.env["FUSEFS_CHAOS_CONFLICT_RATE"] = "0.5"
    _mount(cli, url, fuse_mountpoint)
    for index in range(20):
        (fuse_mountpoint / f"f{index}").write_text("x")
    view = _stats(cli, fuse_mountpoint)
    assert view["conflicts"] > 0
    assert view["retries"] == 0  # only conflicts were injected
    assert view["outage_retries"] == 0


def test_no_control_channel_costs_the_stats_not_the_mount(cli, tmp_path, fuse_mountpoint):
    """A unix socket path holds at most 107 bytes: under a deep data directory there is no channel."""
    url = _mkfs(cli, tmp_path)
    deep = tmp_path / ("d" * 100)
    cli.env["XDG_DATA_HOME"] = str(deep)
    log = tmp_path / "fs.log"
    _mount(cli, url, fuse_mountpoint, "--log-file", str(log))
    (fuse_mountpoint / "f").write_text("served")
    assert "WARNING fusefs.control: no control channel (fusefs stats) at " in log.read_text()
    result = cli("stats", "--once", str(fuse_mountpoint))
    assert result.returncode == 1
    assert "cannot reach the daemon's control channel" in result.one_line_error()
