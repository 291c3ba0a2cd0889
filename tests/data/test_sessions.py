"""Mount sessions and the recovery of dead mounts (metadata/sessions.py, fusefs/recovery.py).

On real mounts (recovery without a mount: tests/fusefs/test_recovery.py): the session is registered
while mounted and removed at a clean unmount; after kill -9 the next mount recovers everything (orphans
reclaimed, dirty chunks rebuilt, chunks beyond the size dropped with their files, gc then finds nothing);
``fusefs status`` lists sessions, dead ones marked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from metadata import sessions
from metadata.keys import FsKeys
from metadata.urls import open_store

from .conftest import SMALL, wait_for


# -- real mounts --------------------------------------------------------------------------------------------
def _store_view(data_mounts, mp: Path):
    """(store opened beside the daemon, the filesystem's keys)."""
    m = data_mounts.factory.mounts[mp]
    return open_store(m.store, read_only=True, exclusive=False), FsKeys(m.name)


def _sessions(data_mounts, mp: Path) -> dict[bytes, sessions.Session]:
    store, keys = _store_view(data_mounts, mp)
    try:
        return store.transact(lambda tr: sessions.list_sessions(tr, keys))
    finally:
        store.close()


def test_session_registered_while_mounted_and_removed_at_unmount(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, env={sessions.HEARTBEAT_INTERVAL_ENV: "0.2"})
    pid = data_mounts.factory.mounts[mp].proc.pid
    (only,) = _sessions(data_mounts, mp).values()
    assert (only.pid, only.mountpoint, only.host) == (pid, str(mp), sessions.this_process().host)
    assert only.start_ticks == sessions.process_start_ticks(pid)
    first = only.heartbeat_ns
    assert wait_for(lambda: _sessions(data_mounts, mp)[only.id].heartbeat_ns > first, 30), "no heartbeat"
    data_mounts.unmount(mp)
    assert _sessions(data_mounts, mp) == {}


def test_kill9_then_the_next_mount_recovers_everything(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL, options=("strict",))  # strict: each write reaches the daemon at once
    (mp / "held").write_bytes(os.urandom(200_000))
    held = os.open(mp / "held", os.O_RDONLY)
    os.unlink(mp / "held")  # an orphan with four chunks, held open
    big = os.open(mp / "big", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(big, os.urandom(300_000))  # five chunks written and marked dirty, nothing flushed: size 0
    before = _sessions(data_mounts, mp)
    data_mounts.kill(mp)
    for fd in (held, big):
        try:
            os.close(fd)
        except OSError:
            pass
    data_mounts.start(mp)
    data_mounts.wait_for_recovery(mp)
    store, keys = _store_view(data_mounts, mp)
    try:
        assert wait_for(lambda: not store.transact(lambda tr: tr.get_range(*keys.orphans())), 30), (
            "orphan kept"
        )
        assert wait_for(
            lambda: set(store.transact(lambda tr: sessions.list_sessions(tr, keys))).isdisjoint(before), 30
        ), "the dead session's record stays"
    finally:
        store.close()
    assert (mp / "big").read_bytes() == b""
    assert "recovering dead session" in data_mounts.log(mp)
    data_mounts.unmount(mp)
    referenced = data_mounts.referenced_chunks(mp)
    assert referenced == {}, f"chunk records left: {referenced}"
    assert data_mounts.chunk_files(mp) == {}, "chunk files of dropped records left"
    assert "0 unreferenced deleted" in data_mounts.cli(mp, "gc").stdout


def _status(data_mounts, mp: Path) -> str:
    m = data_mounts.factory.mounts[mp]
    res = subprocess.run(
        [sys.executable, "-m", "fusefs", "status", "--store", m.store],
        cwd=m.workdir,
        env=data_mounts.factory._env(m),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and not res.stderr, res
    return res.stdout


def _session_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip().startswith("session ")]
    assert len(lines) == 1, out
    return lines[0]


def test_status_lists_sessions_and_marks_dead_ones(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    pid = data_mounts.factory.mounts[mp].proc.pid
    line = _session_line(_status(data_mounts, mp))
    assert f": {sessions.this_process().host} pid {pid} at {mp}, up " in line, line
    assert line.endswith("s ago") and "(dead" not in line, line
    data_mounts.kill(mp)
    line = _session_line(_status(data_mounts, mp))
    assert f"pid {pid} at {mp}" in line and line.endswith("(dead, will be recovered by the next mount)"), line
    data_mounts.start(mp)
    assert wait_for(lambda: f"pid {pid} " not in _status(data_mounts, mp), 30)


def test_gc_refuses_while_a_session_lives_and_runs_once_it_is_dead(data_mounts) -> None:
    mp = data_mounts.mount(**SMALL)
    m = data_mounts.factory.mounts[mp]
    res = data_mounts.cli(mp, "gc", check=False)
    assert res.returncode == 1, res
    assert res.stderr.startswith(
        f"fusefs: error: {m.name} is mounted ({sessions.this_process().host} "
        f"pid {m.proc.pid} at {mp}, heartbeat "
    ), res.stderr
    assert res.stderr.strip().endswith("unmount every mount to run gc by hand"), res.stderr
    data_mounts.kill(mp)  # dead: its pid is gone
    assert "0 unreferenced deleted" in data_mounts.cli(mp, "gc").stdout
